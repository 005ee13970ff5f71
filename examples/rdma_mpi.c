/*
 * rdma_mpi.c - one-sided RDMA on buffers registered through ubdma's cache, bootstrapped by MPI.
 *
 * Two ranks (mpirun -np 2).  Each opens the first verbs device, makes a reliable-connected queue
 * pair and swaps its number and GID with the peer over MPI.  Then, round after round, each rank
 * does what an application does: allocates a buffer of a size drawn at random (4 KiB - 1 MiB,
 * malloc: heap or its own mapping), fills it, gets a registration from the cache (a context
 * whose cache registers with ibv_reg_mr, ubdma_verbs_registrar()), sends address and rkey to the
 * peer, RDMA WRITEs its own data into the peer's buffer, RDMA READs the peer's data back, checks
 * both, puts the registrations and frees the buffers.  Freed memory comes back at the same
 * addresses (from malloc) or goes away (munmap): the cache must hit the first and never hand out
 * a stale MR for the second.  Prints the cache's counters at the end; exits 0 when every byte
 * was right.
 *
 *   mpirun -np 2 ./rdma_mpi [ROUNDS]
 *
 * Needs a verbs device (soft-RoCE: rdma link add rxe0 type rxe netdev eth0).  Exits 77 without.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>
#include <infiniband/verbs.h>
#include <ubdma/ubdma.h>
#include <ubdma/verbs.h>

#define RW (UBDMA_UMEM_READ | UBDMA_UMEM_WRITE)

struct peer_info {
	uint32_t qpn;
	uint8_t gid[16];
	int gidx;
};

struct buf_info {
	uint64_t addr;
	uint32_t rkey;
	uint32_t len;
};

static struct ibv_context *dev;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static struct ibv_qp *qp;

static int verbose;

/* Stages on stderr with RDMA_MPI_VERBOSE=1: where a run that hangs got to. */
#define STAGE(...) do { if (verbose) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void fail(const char *what)
{
	fprintf(stderr, "rdma_mpi: %s: %s\n", what, strerror(errno));
	MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The first device, its port active, and a GID: an IPv4-mapped one if there is one. */
static int open_device(struct peer_info *me)
{
	struct ibv_device **l = ibv_get_device_list(NULL);
	struct ibv_port_attr pa;

	if (!l || !l[0])
		return -1;
	dev = ibv_open_device(l[0]);
	ibv_free_device_list(l);
	if (!dev)
		return -1;
	for (int i = 0; i < 200 && !(ibv_query_port(dev, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE); i++)
		usleep(50000);
	me->gidx = -1;
	for (int i = 0; i < 16; i++) {
		union ibv_gid g;
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };
		static const uint8_t zero[16];
		if (ibv_query_gid(dev, 1, i, &g))
			break;
		if (!memcmp(g.raw, zero, 16))
			continue;
		if (me->gidx < 0 || !memcmp(g.raw, v4, 12)) {
			me->gidx = i;
			memcpy(me->gid, g.raw, 16);
		}
	}
	return me->gidx < 0 ? -1 : 0;
}

static void connect_qp(const struct peer_info *me, const struct peer_info *peer)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .port_num = 1,
				 .qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ };

	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		fail("INIT");
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = peer->qpn;
	a.max_dest_rd_atomic = 4;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.port_num = 1;
	memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
	a.ah_attr.grh.sgid_index = (uint8_t)me->gidx;
	a.ah_attr.grh.hop_limit = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
				      IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		fail("RTR");
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 4;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				      IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		fail("RTS");
}

/* One RDMA WRITE or READ between [local, lkey] and the peer's [raddr, rkey], waited for. */
static int rdma(enum ibv_wr_opcode op, void *local, uint32_t lkey, uint32_t len, uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge sge = { .addr = (uintptr_t)local, .length = len, .lkey = lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = op, .send_flags = IBV_SEND_SIGNALED,
				  .wr = { .rdma = { .remote_addr = raddr, .rkey = rkey } } }, *bad;
	struct ibv_wc wc;
	int n;

	if (ibv_post_send(qp, &wr, &bad))
		return -1;
	/* a request that never completes is an error, not a hang (30 s: TCG is slow) */
	time_t t0 = time(NULL);
	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		if (time(NULL) - t0 > 30)
			return -1;
	return n < 0 ? -1 : (int)wc.status;
}

static unsigned char pattern(int rank, int round, size_t i)
{
	return (unsigned char)(rank * 131 + round * 7 + i);
}

int main(int argc, char **argv)
{
	int rank, size, rounds = 40, bad = 0;
	struct peer_info me = { 0 }, peer;
	ubdma_ctx_t *ctx;

	verbose = getenv("RDMA_MPI_VERBOSE") != NULL;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	STAGE("rank %d: MPI up", rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (argc > 1)
		rounds = atoi(argv[1]);
	if (size != 2) {
		if (rank == 0)
			fprintf(stderr, "rdma_mpi: run with mpirun -np 2\n");
		MPI_Finalize();
		return 2;
	}
	int have = open_device(&me) == 0, both;
	MPI_Allreduce(&have, &both, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	if (!both) {
		if (rank == 0)
			printf("SKIP: no active verbs device with a GID (soft-RoCE: rdma link add)\n");
		MPI_Finalize();
		return 77;
	}
	struct ibv_qp_init_attr ia = { .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = 16, .max_recv_wr = 1, .max_send_sge = 1,
						.max_recv_sge = 1 } };
	if (!(pd = ibv_alloc_pd(dev)) || !(cq = ibv_create_cq(dev, 16, NULL, NULL, 0)))
		fail("pd, cq");
	ia.send_cq = ia.recv_cq = cq;
	if (!(qp = ibv_create_qp(pd, &ia)))
		fail("qp");
	me.qpn = qp->qp_num;
	MPI_Sendrecv(&me, sizeof(me), MPI_BYTE, 1 - rank, 0, &peer, sizeof(peer), MPI_BYTE, 1 - rank, 0,
		     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	connect_qp(&me, &peer);
	STAGE("rank %d: queue pair %u connected to %u", rank, me.qpn, peer.qpn);

	/* the registration cache, registering into this protection domain */
	int err = ubdma_ctx_open(UBDMA_BACKEND_VA, &ctx);
	if (err || (err = ubdma_verbs_registrar(ctx, pd))) {
		fprintf(stderr, "rdma_mpi: ubdma: %s\n", ubdma_last_error());
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	unsigned seed = 42; /* the same sizes on both ranks */
	for (int r = 0; r < rounds; r++) {
		size_t len = (size_t)4096 << (rand_r(&seed) % 9); /* 4 KiB .. 1 MiB */
		unsigned char *mine = malloc(len), *inbox = malloc(len), *back = malloc(len);
		ubdma_reg_t *rm, *ri, *rb;
		if (!mine || !inbox || !back)
			fail("malloc");
		for (size_t i = 0; i < len; i++)
			mine[i] = pattern(rank, r, i);
		memset(inbox, 0, len);
		memset(back, 0, len);
		if (ubdma_reg_get(ctx, mine, len, RW, &rm) || ubdma_reg_get(ctx, inbox, len, RW, &ri) ||
		    ubdma_reg_get(ctx, back, len, RW, &rb)) {
			fprintf(stderr, "rdma_mpi: ubdma_reg_get: %s\n", ubdma_last_error());
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		/* where the peer may write (inbox) and read (mine) */
		struct buf_info out[2] = { { (uintptr_t)inbox, ubdma_verbs_rkey(ri), (uint32_t)len },
					   { (uintptr_t)mine, ubdma_verbs_rkey(rm), (uint32_t)len } }, in[2];
		MPI_Sendrecv(out, sizeof(out), MPI_BYTE, 1 - rank, 1, in, sizeof(in), MPI_BYTE, 1 - rank, 1,
			     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		STAGE("rank %d: round %d, %zu bytes", rank, r, len);
		int st = rdma(IBV_WR_RDMA_WRITE, mine, ubdma_verbs_lkey(rm), (uint32_t)len, in[0].addr, in[0].rkey);
		int st2 = rdma(IBV_WR_RDMA_READ, back, ubdma_verbs_lkey(rb), (uint32_t)len, in[1].addr, in[1].rkey);
		MPI_Barrier(MPI_COMM_WORLD); /* the peer's write into our inbox is complete */
		size_t wrong = 0;
		for (size_t i = 0; i < len; i++)
			wrong += inbox[i] != pattern(1 - rank, r, i) || back[i] != pattern(1 - rank, r, i);
		if (st || st2 || wrong) {
			fprintf(stderr, "rdma_mpi: rank %d round %d (%zu bytes): write %d read %d, %zu wrong bytes\n", rank,
				r, len, st, st2, wrong);
			bad++;
		}
		MPI_Barrier(MPI_COMM_WORLD); /* the peer is done reading ours */
		ubdma_reg_put(rm);
		ubdma_reg_put(ri);
		ubdma_reg_put(rb);
		free(mine);
		free(inbox);
		free(back);
	}
	struct ubdma_rcache_stats s;
	ubdma_rcache_stats(ctx, &s, sizeof(s));
	printf("rank %d: %d rounds, %d bad; cache hits %llu, misses %llu, invalidations %llu, evictions %llu\n", rank,
	       rounds, bad, (unsigned long long)s.hits, (unsigned long long)s.misses,
	       (unsigned long long)s.invalidations, (unsigned long long)s.evictions);
	ubdma_ctx_close(ctx); /* every MR deregistered, before the PD goes */
	ibv_destroy_qp(qp);
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
	ibv_close_device(dev);
	int allbad;
	MPI_Allreduce(&bad, &allbad, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	MPI_Finalize();
	return allbad ? 1 : 0;
}
