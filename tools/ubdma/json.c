/*
 * json.c - the tool's JSON, on json-c: every command with --json builds one document and prints
 * it as a single compact line (no spaces, '/' left as is, members in the order they were added),
 * the form scripts and tests/unit/cli read.  json-c rather than jansson because the documents
 * hold 64-bit unsigned values (an IOVA window ends at 2^64 - 1, which jansson's signed integers
 * cannot carry) and a figure printed to one decimal (json_object_new_double_s).
 */
#include <stdio.h>

#include "cli.h"

void json_print(json_object *v)
{
	puts(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(v);
}

void jadd_str(json_object *o, const char *key, const char *s)
{
	json_object_object_add(o, key, s ? json_object_new_string(s) : NULL);
}

void jadd_int(json_object *o, const char *key, long long v)
{
	json_object_object_add(o, key, json_object_new_int64(v));
}

void jadd_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

void jadd_bool(json_object *o, const char *key, int v)
{
	json_object_object_add(o, key, json_object_new_boolean(!!v));
}

void jadd_null(json_object *o, const char *key)
{
	json_object_object_add(o, key, NULL);
}

json_object *jadd_obj(json_object *o, const char *key)
{
	json_object *v = json_object_new_object();

	json_object_object_add(o, key, v);
	return v;
}

json_object *jadd_arr(json_object *o, const char *key)
{
	json_object *v = json_object_new_array();

	json_object_object_add(o, key, v);
	return v;
}

const char *jget_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

int jget_num(json_object *o, const char *key, double *d)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		return 0;
	*d = json_object_get_double(v);
	return 1;
}
