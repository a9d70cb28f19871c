/* Test hooks of the wire layer (core._wire_test and friends, l_wire.c). */
#ifndef PAR_L_WIRE_H
#define PAR_L_WIRE_H
#include "lua.h"
void l_wire_open(lua_State *L);
#endif
