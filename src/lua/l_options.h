/* Option tables ({workers = 4, ...}): one checker for every function that
 * takes one, in C and (as core._options) in the facade. */
#ifndef PAR_L_OPTIONS_H
#define PAR_L_OPTIONS_H

#include "lua.h"

/*
 * An option and the values it takes:
 *   "count"    a positive integer        "size"     a non-negative integer
 *   "seconds"  a non-negative number     "boolean", "function", "table"
 *   "progress" a boolean or a function   "a|b|c"    one of these strings
 */
typedef struct l_option { const char *name, *kind; } l_option;

/* Checks the table at idx (argument arg of the running C function): an
 * unknown key, or a value of the wrong kind, raises
 * "bad argument #arg to 'f' (unknown option 'worker')". opts ends with
 * {NULL, NULL}. */
void l_check_options(lua_State *L, int idx, int arg, const l_option *opts);

void l_options_open(lua_State *L);

#endif
