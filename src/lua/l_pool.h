/* The binding's open functions for pools, futures and the measuring helpers. */
#ifndef PAR_L_POOL_H
#define PAR_L_POOL_H

#include "lua.h"

void l_pool_open(lua_State *L);
void l_future_open(lua_State *L);
void l_util_open(lua_State *L);
int par_cpu_count_default(void);

#endif
