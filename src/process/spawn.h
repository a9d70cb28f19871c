/*
 * Starting and ending worker processes (the process backend), no Lua.
 *
 * Workers are never forked from this process, which may already run
 * threads (a fork would inherit locks other threads held): each one is a
 * fresh program, the worker executable, started with posix_spawn (which
 * execs at once) with one end of a socketpair as descriptor 3. Which
 * executable: $PARALLEL_WORKER if set; else this very program when its
 * main called parallel_worker_main (an embedding host serving its own
 * workers); else `parallel-worker` beside the file this code was loaded
 * from (core.so, found with dladdr).
 *
 * The worker sets PR_SET_PDEATHSIG and then checks that its parent is
 * still the pid given on its command line, so it never outlives the
 * thread that started it, even when this process is killed with SIGKILL.
 * That thread is the pool's worker thread that owns the process.
 *
 * Threads: proc_spawn, proc_spawn_begin/end, proc_reap run on the owning
 * thread (proc_spawn_begin's posix_spawn on the spawner's); proc_kill may
 * run on any thread (the caller makes sure the pid is not reaped
 * meanwhile).
 */
#ifndef PAR_PROC_SPAWN_H
#define PAR_PROC_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/* The descriptor the channel has in the worker. */
#define PROC_CHANNEL_FD 3

/* The argument that marks a process as a worker: argv[1]. */
#define PROC_WORKER_ARG "--parallel-worker"

/* Set by parallel_worker_main: this program can serve as a worker. */
void proc_set_self_worker(void);

/* The worker executable's path into buf; 0 if none was found (buf then
 * holds the reason). */
int proc_worker_path(char *buf, size_t size);

/* Descriptors a worker gets beside the channel, as PROC_CHANNEL_FD + 1
 * and on: the ledger (PROC_LEDGER_FD), its eventfd (PROC_BELL_FD), the
 * parent's (PROC_PARENT_BELL_FD). */
#define PROC_GIVE_FDS 3

/* Starts a worker; *fd gets the parent's end of the channel (close-on-exec,
 * blocking); give[i] (if >= 0) becomes the worker's PROC_CHANNEL_FD + 1 + i.
 * Returns the pid, or -1 with errno set. */
pid_t proc_spawn(const char *exe, int *fd, const int give[PROC_GIVE_FDS]);

/* The same, with posix_spawn on a spawner's thread: it holds its caller
 * until the exec (about a millisecond), which the owning thread must not
 * wait for while results arrive (a spare started while tasks run). *fd is
 * usable at once (what is sent waits in the socket); proc_spawn_end waits
 * for the spawn and returns the pid, or -1 with errno set (the caller
 * then closes *fd). NULL (errno set, nothing open) when it could not
 * begin. A spawner's thread must outlive the processes it started: the
 * worker's PR_SET_PDEATHSIG fires when the thread that started it ends. */
typedef struct proc_spawner proc_spawner;
typedef struct proc_spawning proc_spawning;
proc_spawner *proc_spawner_new(void);
void proc_spawner_free(proc_spawner *sp);      /* its processes reaped first */
proc_spawning *proc_spawn_begin(proc_spawner *sp, const char *exe, int *fd,
                                const int give[PROC_GIVE_FDS]);
pid_t proc_spawn_end(proc_spawning *s);

/* Waits for pid to end, killing it (SIGKILL) once `grace` seconds have
 * passed (0: at once), and describes how it ended: "exit status 3",
 * "signal 11, Segmentation fault" (why may be NULL). Returns the raw wait
 * status. */
int proc_reap(pid_t pid, double grace, char *why, size_t size);

/* Describes a wait status as proc_reap does. */
void proc_describe(int status, char *why, size_t size);

#endif
