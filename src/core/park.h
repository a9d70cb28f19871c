/*
 * Parking on a word: a thread sleeps while an atomic int holds the value it
 * last saw, and a thread that changes the word wakes the sleepers. On Linux
 * it is the futex itself: a wake-up is one system call for the waker and
 * none after it for the woken. (A condition variable costs one more: glibc
 * re-takes the mutex on the way out of pthread_cond_wait marked contended,
 * so the woken thread's next unlock is a FUTEX_WAKE that finds no one.
 * strace of a submit -> get round trip showed it on both sides.)
 * Elsewhere: a condition variable per bucket of words, the same contract.
 *
 * Contract: change the word, then wake. A waiter re-reads the word under
 * its own rules after every return: wake-ups may be spurious.
 * Threads: any. No state to free.
 */
#ifndef PAR_PARK_H
#define PAR_PARK_H

#include <stdatomic.h>
#include <stdint.h>

/* Sleeps while *word == expected, until woken or the absolute deadline
 * (clock.h; PAR_FOREVER: none): PAR_TIMEOUT once it has passed, else
 * PAR_OK (woken, the word had changed, or spurious). Counts as a sleep
 * for the waiting policy (wait.h). */
int par_park_wait(_Atomic int *word, int expected, double deadline);
/* Wakes one sleeper on word, or all of them. */
void par_park_wake(_Atomic int *word, int all);

#ifdef __linux__
/* Futexes shared between processes (words in shared memory, shm.h): the
 * same futex wait and wake without the private flag. deadline: par_now()
 * scale, PAR_FOREVER allowed. PAR_OK (woken, or the word was not val) or
 * PAR_TIMEOUT. bits: FUTEX_BITSET-style wake-up classes (~0u: all). */
int par_futex_wait(_Atomic uint32_t *word, uint32_t val, uint32_t bits, double deadline);
void par_futex_wake(_Atomic uint32_t *word, int n, uint32_t bits);
#endif

#endif
