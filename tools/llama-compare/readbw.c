// readbw: read memory bandwidth, the figure the decode bound in results.md divides by.
//
//     cc -O3 [-mavx2] -pthread -o readbw readbw.c
//     readbw [--threads 2] [--mib 1024] [--passes 8]
//
// Allocates one buffer (1 GiB by default, far larger than any last-level cache), touches every
// page, then has THREADS threads each sum its own contiguous slice as 64-bit integers, all
// threads starting each pass together. Prints the best pass and the median pass in GB/s
// (10^9 bytes per second) and, with --json, one JSON object instead.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *base;
    size_t count;
    uint64_t sum;
} Slice;

static pthread_barrier_t start_barrier, end_barrier;
static int passes = 8;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Four independent accumulators so the adds do not wait on each other; the compiler turns
// each into vector adds.
static uint64_t sum_slice(const uint64_t *p, size_t n) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    for (; i < n; i++) a += p[i];
    return a + b + c + d;
}

static void *worker(void *arg) {
    Slice *s = arg;
    for (int pass = 0; pass < passes; pass++) {
        pthread_barrier_wait(&start_barrier);
        s->sum += sum_slice(s->base, s->count);
        pthread_barrier_wait(&end_barrier);
    }
    return NULL;
}

static int compare(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    int threads = 2, json = 0;
    size_t mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: readbw [--threads N] [--mib N] [--passes N] [--json]\n");
            return 2;
        }
    }
    if (threads < 1 || mib < 1 || passes < 1) {
        fprintf(stderr, "readbw: --threads, --mib and --passes must be positive\n");
        return 2;
    }
    size_t bytes = mib << 20, words = bytes / sizeof(uint64_t);
    uint64_t *buffer = NULL;
    if (posix_memalign((void **)&buffer, 4096, bytes) != 0) {
        fprintf(stderr, "readbw: cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < words; i++) buffer[i] = i; // touches every page before timing

    pthread_barrier_init(&start_barrier, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&end_barrier, NULL, (unsigned)threads + 1);
    Slice *slices = calloc((size_t)threads, sizeof(Slice));
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    size_t per = words / (size_t)threads;
    for (int t = 0; t < threads; t++) {
        slices[t].base = buffer + (size_t)t * per;
        slices[t].count = t == threads - 1 ? words - (size_t)t * per : per;
        pthread_create(&ids[t], NULL, worker, &slices[t]);
    }
    double *rates = calloc((size_t)passes, sizeof(double));
    for (int pass = 0; pass < passes; pass++) {
        pthread_barrier_wait(&start_barrier);
        double t0 = now();
        pthread_barrier_wait(&end_barrier);
        rates[pass] = (double)bytes / (now() - t0) / 1e9;
    }
    uint64_t check = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        check += slices[t].sum;
    }
    qsort(rates, (size_t)passes, sizeof(double), compare);
    double best = rates[passes - 1];
    double median = passes % 2 ? rates[passes / 2] : 0.5 * (rates[passes / 2 - 1] + rates[passes / 2]);
    // The checksum keeps the sums from being optimised away; n(n-1)/2 per pass, modulo 2^64.
    uint64_t expected = (uint64_t)passes * (((uint64_t)words * ((uint64_t)words - 1)) / 2);
    if (check != expected) {
        fprintf(stderr, "readbw: checksum mismatch\n");
        return 1;
    }
    if (json)
        printf("{\"threads\": %d, \"mib\": %zu, \"passes\": %d, \"best_gbps\": %.3f, \"median_gbps\": %.3f}\n",
               threads, mib, passes, best, median);
    else
        printf("read bandwidth: %.2f GB/s best, %.2f GB/s median (%d threads, %zu MiB, %d passes)\n",
               best, median, threads, mib, passes);
    free(rates);
    free(ids);
    free(slices);
    free(buffer);
    return 0;
}
