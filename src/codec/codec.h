/*
 * Lua value <-> message, following the transfer rules of the README
 * ("What can travel"). Encoding runs in the sender's state and raises a
 * Lua error naming the path of a value that cannot travel; decoding runs in
 * the receiver's state and pushes fresh copies.
 */
#ifndef PAR_CODEC_H
#define PAR_CODEC_H

#include "lua.h"
#include "core/msg.h"

/*
 * Encodes the n values at stack[first .. first+n-1]. Error paths start at
 * `root`: with n == 1 and indexed == 0 the value is called `root`
 * ("item"); otherwise value i is called root[i] ("args[2]").
 * Returns a new message; raises on a value that cannot travel or on out of
 * memory. Never leaves a reference or buffer behind when it raises.
 */
par_msg *codec_encode(lua_State *L, int first, int n, const char *root, int indexed);

/* Encodes a call: stack[first] is the function (called "fn" in errors),
 * the n-1 values after it are its arguments ("args[1]", ...). */
par_msg *codec_encode_call(lua_State *L, int first, int n);

/*
 * codec_encode_call for a task: when an argument is a long sequence, the
 * message goes in segments of about half a megabyte, so that the worker
 * decodes while this thread still encodes. submit(L, ud, m) is called with
 * the first segment as soon as it is ready and takes it over (it queues the
 * task; it may raise). Returns the whole message when it went in one piece,
 * NULL once submit was called. If encoding fails after that, submit is
 * called again with NULL (the task is abandoned) before the error goes on;
 * the worker's decode then fails ("the sender failed ...") and so does
 * that task, without running.
 */
typedef void (*codec_submit_fn)(lua_State *L, void *ud, par_msg *first);
par_msg *codec_encode_call_streamed(lua_State *L, int first, int n, codec_submit_fn submit,
                                    void *ud);

/* Encodes a map chunk: the function at fn, then list[first..last] (read
 * raw) as one table, then `label`, the index of the chunk's first item in
 * errors ("list[label]"), then the number of items, nils included. With
 * star, each item that is a table is an argument list sent with its count
 * as field n (t.n when an integer, else #t). */
par_msg *codec_encode_chunk(lua_State *L, int fn, int list, lua_Integer first, lua_Integer last,
                            lua_Integer label, int star);

/* Decodes the (results, n) message of a map chunk straight into
 * dest[offset ..]; returns n. */
lua_Integer codec_decode_into(lua_State *L, const par_msg *m, int dest, lua_Integer offset);

/* Pushes the values of m; returns how many. Raises only on out of memory. */
int codec_decode(lua_State *L, const par_msg *m);

/* Per-state setup (called by luaopen_parallel_core). */
void codec_open(lua_State *L);

#endif
