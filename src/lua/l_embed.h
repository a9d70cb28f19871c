/*
 * The host-facing half of include/parallel.h that worker states use:
 * l_embed_prepare puts parallel.core in a new worker state (package.loaded
 * and package.preload) and l_embed_run_hook runs the host's state hook there.
 */
#ifndef PAR_L_EMBED_H
#define PAR_L_EMBED_H

#include "lua.h"

void l_embed_prepare(lua_State *L);
void l_embed_run_hook(lua_State *L);

#endif
