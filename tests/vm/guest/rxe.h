/*
 * rxe.h - soft-RoCE for the guest programs: the rxe device on the e1000e's netdev (run-guest.sh
 * -r -N: rdma_rxe loaded, the NIC on its kernel driver), and a pair of RC queue pairs on it
 * connected to each other, through which a program does RDMA WRITE / READ to a memory region
 * as a peer would.  rxe loops traffic between its own addresses inside the kernel.
 */
#ifndef UBDMA_GUEST_RXE_H
#define UBDMA_GUEST_RXE_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>

struct rxe {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qa, *qb; /* qa posts; qb is its peer */
	union ibv_gid gid;
	int gidx;
	char why[200];
};

static int rxe_sh(const char *cmd)
{
	int st = system(cmd);

	return st == 0 ? 0 : -1;
}

/* The rxe device rxe0 on the NIC's netdev, made once; 0 or -1 with r->why. */
static int rxe_device(struct rxe *r)
{
	const char *nd = getenv("UBDMA_VM_NIC_NETDEV");
	char cmd[256];
	struct ibv_device **l;
	int n;

	if (!nd || !*nd) {
		snprintf(r->why, sizeof(r->why), "no netdev (run-guest.sh -N: the e1000e on its kernel driver)");
		return -1;
	}
	l = ibv_get_device_list(&n);
	if (!l || n == 0) {
		if (l)
			ibv_free_device_list(l);
		snprintf(cmd, sizeof(cmd), "ip link set %s up && ip addr add 10.0.2.15/24 dev %s 2>/dev/null;"
			 " rdma link add rxe0 type rxe netdev %s", nd, nd, nd);
		if (rxe_sh(cmd)) {
			snprintf(r->why, sizeof(r->why), "rdma link add rxe0 on %.32s failed (rdma_rxe loaded? run-guest.sh -r)", nd);
			return -1;
		}
		l = ibv_get_device_list(&n);
	}
	if (!l || n == 0) {
		snprintf(r->why, sizeof(r->why), "no verbs device after rdma link add (rxe provider packed?)");
		return -1;
	}
	r->ctx = ibv_open_device(l[0]);
	ibv_free_device_list(l);
	if (!r->ctx) {
		snprintf(r->why, sizeof(r->why), "ibv_open_device: %s", strerror(errno));
		return -1;
	}
	/* the port follows the netdev's carrier */
	for (int i = 0; i < 200; i++) {
		struct ibv_port_attr pa;
		if (ibv_query_port(r->ctx, 1, &pa) == 0 && pa.state == IBV_PORT_ACTIVE)
			break;
		usleep(50000);
	}
	/* an IPv4-mapped GID (the address above) if there is one, else the first valid one */
	r->gidx = -1;
	for (int i = 0; i < 16; i++) {
		union ibv_gid g;
		if (ibv_query_gid(r->ctx, 1, i, &g))
			break;
		static const uint8_t v4[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		int zero = 1;
		for (int j = 0; j < 16; j++)
			zero &= g.raw[j] == 0;
		if (zero)
			continue;
		if (r->gidx < 0 || !memcmp(g.raw, v4, 12)) {
			r->gidx = i;
			r->gid = g;
		}
	}
	if (r->gidx < 0) {
		snprintf(r->why, sizeof(r->why), "rxe0 has no GID");
		return -1;
	}
	return 0;
}

/* The device made by rxe_device() already (another process): opened, port active, GID chosen. */
static __attribute__((unused)) int rxe_device_open(struct rxe *r)
{
	memset(r, 0, sizeof(*r));
	return rxe_device(r);
}

static struct ibv_qp *rxe_qp(struct rxe *r)
{
	struct ibv_qp_init_attr ia = { .send_cq = r->cq, .recv_cq = r->cq, .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = 64, .max_recv_wr = 4, .max_send_sge = 1,
						.max_recv_sge = 1 } };
	struct ibv_qp *q = ibv_create_qp(r->pd, &ia);
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1,
				 .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
						    IBV_ACCESS_REMOTE_READ };

	if (!q || ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return NULL;
	return q;
}

static int rxe_connect(struct rxe *r, struct ibv_qp *q, uint32_t peer)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = peer,
				 .rq_psn = 0, .max_dest_rd_atomic = 4, .min_rnr_timer = 12,
				 .ah_attr = { .is_global = 1, .port_num = 1,
					      .grh = { .dgid = r->gid, .sgid_index = (uint8_t)r->gidx,
						       .hop_limit = 1 } } };

	if (ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.sq_psn = 0;
	a.max_rd_atomic = 4;
	return ibv_modify_qp(q, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
					    IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC) ? -1 : 0;
}

/* (Re)make the queue pairs: after a failed work request they are in the error state. */
static int rxe_pair(struct rxe *r)
{
	if (r->qa)
		ibv_destroy_qp(r->qa);
	if (r->qb)
		ibv_destroy_qp(r->qb);
	r->qa = r->qb = NULL;
	if (!(r->qa = rxe_qp(r)) || !(r->qb = rxe_qp(r)) || rxe_connect(r, r->qa, r->qb->qp_num) ||
	    rxe_connect(r, r->qb, r->qa->qp_num)) {
		snprintf(r->why, sizeof(r->why), "queue pairs: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int rxe_open(struct rxe *r)
{
	memset(r, 0, sizeof(*r));
	if (rxe_device(r))
		return -1;
	if (!(r->pd = ibv_alloc_pd(r->ctx)) || !(r->cq = ibv_create_cq(r->ctx, 128, NULL, NULL, 0))) {
		snprintf(r->why, sizeof(r->why), "pd/cq: %s", strerror(errno));
		return -1;
	}
	return rxe_pair(r);
}

static void rxe_close(struct rxe *r)
{
	if (r->qa)
		ibv_destroy_qp(r->qa);
	if (r->qb)
		ibv_destroy_qp(r->qb);
	if (r->cq)
		ibv_destroy_cq(r->cq);
	if (r->pd)
		ibv_dealloc_pd(r->pd);
	if (r->ctx)
		ibv_close_device(r->ctx);
}

/*
 * One RDMA WRITE (or READ) of len bytes between local [src, lkey] and remote [raddr, rkey], on
 * qa, waited for.  Returns the completion status (IBV_WC_SUCCESS 0), or -1 on a post error or
 * no completion within 20 s.
 */
static int rxe_rdma(struct rxe *r, enum ibv_wr_opcode op, void *src, uint32_t lkey, size_t len, uint64_t raddr,
		    uint32_t rkey)
{
	struct ibv_sge sge = { .addr = (uintptr_t)src, .length = (uint32_t)len, .lkey = lkey };
	struct ibv_send_wr wr = { .wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = op,
				  .send_flags = IBV_SEND_SIGNALED,
				  .wr = { .rdma = { .remote_addr = raddr, .rkey = rkey } } }, *bad;
	struct ibv_wc wc;
	struct timespec t0, t;

	if (ibv_post_send(r->qa, &wr, &bad))
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int n = ibv_poll_cq(r->cq, 1, &wc);
		if (n < 0)
			return -1;
		if (n == 1)
			return wc.status;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20)
			return -1;
	}
}

#endif
