#include "thread_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <immintrin.h>

// A job lives on the submitting thread's stack. Workers join it under `lock` (so a worker
// that wakes late never touches a job that has finished) and leave it under `lock`; the
// submitter returns only when every task has run and no worker is still inside the job.
struct job {
    moe_pool_task task;
    void *context;
    size_t count;
    atomic_size_t next;      // the next task index to hand out
    size_t users;            // workers inside the job (guarded by lock)
    atomic_size_t unfinished;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t job_done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit = PTHREAD_MUTEX_INITIALIZER;  // one job at a time

static struct job *current;              // guarded by lock
static atomic_ulong generation;          // bumped (under lock) for every new job
static int stopping;                     // guarded by lock
static pthread_t *workers;
static size_t worker_count;
static atomic_size_t thread_count;       // 0 until first use; read without locks (tasks ask it)
static _Thread_local int inside_task;

// About 20-40 us of pause instructions: long enough to catch the next product of a decode
// step, short enough that an idle pool is asleep almost at once.
enum { spin_rounds = 2000 };

static void run_tasks(struct job *job) {
    inside_task = 1;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->count) break;
        job->task(job->context, i);
        atomic_fetch_sub_explicit(&job->unfinished, 1, memory_order_acq_rel);
    }
    inside_task = 0;
}

static void *worker_main(void *unused) {
    (void)unused;
    unsigned long seen = atomic_load(&generation);
    for (;;) {
        for (int spin = 0; spin < spin_rounds && atomic_load_explicit(&generation, memory_order_acquire) == seen; spin++)
            _mm_pause();
        pthread_mutex_lock(&lock);
        while (!stopping && atomic_load(&generation) == seen) pthread_cond_wait(&work_ready, &lock);
        if (stopping) { pthread_mutex_unlock(&lock); return NULL; }
        seen = atomic_load(&generation);
        struct job *job = current;
        if (job) job->users++;
        pthread_mutex_unlock(&lock);
        if (!job) continue;
        run_tasks(job);
        pthread_mutex_lock(&lock);
        job->users--;
        if (job->users == 0 && atomic_load(&job->unfinished) == 0) pthread_cond_broadcast(&job_done);
        pthread_mutex_unlock(&lock);
    }
}

static void stop_workers(void) {
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; i < worker_count; i++) pthread_join(workers[i], NULL);
    free(workers);
    workers = NULL;
    worker_count = 0;
    stopping = 0;
}

static void start_workers(size_t threads) {
    size_t wanted = threads < 1 ? 0 : threads - 1;
    workers = wanted ? calloc(wanted, sizeof *workers) : NULL;
    for (size_t i = 0; i < wanted; i++) {
        if (pthread_create(&workers[worker_count], NULL, worker_main, NULL) != 0) break;  // run with fewer
        worker_count++;
    }
    atomic_store(&thread_count, worker_count + 1);
}

static size_t online_processors(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

void moe_pool_set_threads(size_t threads) {
    pthread_mutex_lock(&submit);
    if (atomic_load(&thread_count) != 0) stop_workers();
    start_workers(threads);
    pthread_mutex_unlock(&submit);
}

size_t moe_pool_threads(void) {
    size_t n = atomic_load(&thread_count);
    if (n != 0) return n;  // never 0 while a job runs, so tasks do not take the lock below
    pthread_mutex_lock(&submit);
    if (atomic_load(&thread_count) == 0) start_workers(online_processors());
    n = atomic_load(&thread_count);
    pthread_mutex_unlock(&submit);
    return n;
}

static void run_inline(size_t count, moe_pool_task task, void *context) {
    for (size_t i = 0; i < count; i++) task(context, i);
}

void moe_pool_run(size_t count, moe_pool_task task, void *context) {
    if (count == 0) return;
    if (count == 1 || inside_task || pthread_mutex_trylock(&submit) != 0) { run_inline(count, task, context); return; }
    if (atomic_load(&thread_count) == 0) start_workers(online_processors());
    if (worker_count == 0) { pthread_mutex_unlock(&submit); run_inline(count, task, context); return; }

    struct job job = { .task = task, .context = context, .count = count, .users = 0 };
    atomic_init(&job.next, 0);
    atomic_init(&job.unfinished, count);
    pthread_mutex_lock(&lock);
    current = &job;
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&lock);

    run_tasks(&job);

    // The last tasks may still run on workers: spin briefly, then sleep until they are done.
    for (int spin = 0; spin < spin_rounds && atomic_load(&job.unfinished) != 0; spin++) _mm_pause();
    pthread_mutex_lock(&lock);
    while (atomic_load(&job.unfinished) != 0 || job.users != 0) pthread_cond_wait(&job_done, &lock);
    current = NULL;
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&submit);
}
