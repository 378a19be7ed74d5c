#ifndef MOEKIT_THREAD_POOL_H
#define MOEKIT_THREAD_POOL_H

#include <stddef.h>

// One process-wide pool of compute threads shared by every kernel of the forward pass.
//
// moe_pool_run(count, task, context) calls task(context, i) once for each i < count, on the
// calling thread and the pool's workers together, and returns when all calls have returned.
// Workers that run out of work spin for a few microseconds (a decode step dispatches many
// small products back to back) and then sleep on a condition variable: an idle pool uses
// no CPU. A call made from inside a task, or while another thread's call is running, runs
// its tasks inline on the calling thread, so nesting and concurrent callers are safe.

typedef void (*moe_pool_task)(void *context, size_t index);

/// Total threads that run tasks, the caller included (at least 1). Stops and restarts the
/// workers when the count changes; not to be called while a moe_pool_run is in flight.
void moe_pool_set_threads(size_t threads);

/// The current thread count (the number of online processors until set).
size_t moe_pool_threads(void);

void moe_pool_run(size_t count, moe_pool_task task, void *context);

#endif
