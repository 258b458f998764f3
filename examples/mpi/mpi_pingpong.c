/* Ping-pong latency and bandwidth between pairs of ranks. Ranks pair up (0-1, 2-3, ...; an odd
 * last rank only joins the barriers and reductions) and every pair runs at the same time:
 *
 *   latency:   8-byte messages, half the round-trip time of each of LAT_ITERS round trips (after
 *              a warm-up), the median in microseconds;
 *   bandwidth: 4 MiB messages, BW_REPS repetitions of BW_ITERS round trips (after one untimed
 *              repetition), bytes of one message over half a round trip, the median in MB/s
 *              (1e6 bytes/s). Far above the shared-memory transport's eager limit, so Open MPI
 *              moves them by its large-message path (single-copy CMA where allowed).
 *
 * Contents are checked outside the timed regions: every 8-byte message carries its iteration
 * number; the 4 MiB receive buffer is zeroed before each repetition and the last message of the
 * repetition is compared with the sender's pattern (a new one every repetition). Rank 0 prints
 * one line for the slowest pair (largest latency, smallest bandwidth):
 *
 *   pingpong: ranks 4 pairs 2 lat_8B_us 0.42 bw_4MiB_MBps 9123.4 bad_ints 0 lat_iters 20000 bw_reps 20 bw_iters 16
 *
 * Exit status 0 when no int was wrong, 1 when some were, 2 on bad usage (fewer than 2 ranks,
 * non-numeric arguments).
 *
 *   mpirun -np 4 ./mpi_pingpong [LAT_ITERS [BW_REPS [BW_ITERS]]]   (defaults 20000 20 16)
 *   mpirun -np N ./mpi_pingpong init     MPI_Init, one barrier, MPI_Finalize: a start in which
 *                                        every rank meets every other (bench/mpi.sh's start time)
 */
#include <float.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG_BYTES (4 << 20)
#define BIG_INTS (BIG_BYTES / (int)sizeof(int))
#define SMALL_INTS 2 /* 8 bytes */
#define TAG_LAT 1
#define TAG_BW 2

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A positive count from argv[i], or def when absent; -1 when not a positive number. */
static int arg_count(int argc, char **argv, int i, int def) {
    if (i >= argc)
        return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    return (*end || end == argv[i] || v < 1 || v > 100000000) ? -1 : (int)v;
}

/* The pattern a rank sends in bandwidth repetition rep. */
static int pattern(int rank, int rep, int i) {
    return rank * 1000003 + rep * 7919 + i;
}

/* One round trip of n ints with the peer: the initiator sends first, the other answers. */
static void round_trip(int peer, int initiator, int *out, int *in, int n, int tag) {
    if (initiator) {
        MPI_Send(out, n, MPI_INT, peer, tag, MPI_COMM_WORLD);
        MPI_Recv(in, n, MPI_INT, peer, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(in, n, MPI_INT, peer, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(out, n, MPI_INT, peer, tag, MPI_COMM_WORLD);
    }
}

/* Half round trips of 8-byte messages, in seconds, into samples[0..iters); returns bad ints.
 * The initiator sends first; both sides check the iteration number they receive. */
static long latency(int peer, int initiator, int warmup, int iters, double *samples) {
    int out[SMALL_INTS], in[SMALL_INTS];
    long bad = 0;
    for (int it = -warmup; it < iters; it++) {
        out[0] = out[1] = it;
        in[0] = in[1] = -1 - warmup;
        double t0 = MPI_Wtime();
        round_trip(peer, initiator, out, in, SMALL_INTS, TAG_LAT);
        double t1 = MPI_Wtime();
        if (it >= 0)
            samples[it] = (t1 - t0) / 2;
        bad += (in[0] != it) + (in[1] != it);
    }
    return bad;
}

/* One bandwidth repetition: iters round trips of 4 MiB; returns its seconds and adds the wrong
 * ints of the last message received to *bad. */
static double bandwidth_rep(int rank, int peer, int initiator, int rep, int iters, int *out,
                            int *in, long *bad) {
    for (int i = 0; i < BIG_INTS; i++)
        out[i] = pattern(rank, rep, i);
    memset(in, 0, BIG_BYTES);
    /* Both sides filled their buffers before the clock starts. */
    MPI_Sendrecv(MPI_BOTTOM, 0, MPI_BYTE, peer, TAG_BW, MPI_BOTTOM, 0, MPI_BYTE, peer, TAG_BW,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    double t0 = MPI_Wtime();
    for (int it = 0; it < iters; it++) {
        round_trip(peer, initiator, out, in, BIG_INTS, TAG_BW);
    }
    double t = MPI_Wtime() - t0;
    for (int i = 0; i < BIG_INTS; i++)
        *bad += in[i] != pattern(peer, rep, i);
    return t;
}

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc == 2 && strcmp(argv[1], "init") == 0) {
        MPI_Barrier(MPI_COMM_WORLD);
        MPI_Finalize();
        return 0;
    }
    int lat_iters = arg_count(argc, argv, 1, 20000);
    int bw_reps = arg_count(argc, argv, 2, 20);
    int bw_iters = arg_count(argc, argv, 3, 16);
    if (size < 2 || lat_iters < 0 || bw_reps < 0 || bw_iters < 0 || argc > 4) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np N (N >= 2) %s [LAT_ITERS [BW_REPS [BW_ITERS]]]\n",
                    argv[0]);
        MPI_Finalize();
        return 2;
    }
    int peer = rank ^ 1;
    int active = peer < size;
    int initiator = active && rank % 2 == 0;

    /* Idle and responding ranks report values that cannot win the reductions. */
    double lat_us = 0, bw_mbps = DBL_MAX;
    long bad = 0;
    double *samples = malloc(sizeof(double) * (size_t)(lat_iters > bw_reps ? lat_iters : bw_reps));
    int *out = NULL, *in = NULL;
    if (!samples || posix_memalign((void **)&out, 4096, BIG_BYTES) ||
        posix_memalign((void **)&in, 4096, BIG_BYTES)) {
        fprintf(stderr, "rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }

    MPI_Barrier(MPI_COMM_WORLD);
    if (active) {
        int warmup = lat_iters / 10 < 100 ? 100 : lat_iters / 10;
        bad += latency(peer, initiator, warmup, lat_iters, samples);
        if (initiator)
            lat_us = median(samples, lat_iters) * 1e6;
    }

    MPI_Barrier(MPI_COMM_WORLD);
    if (active) {
        bandwidth_rep(rank, peer, initiator, 0, 1, out, in, &bad); /* warm-up */
        for (int rep = 0; rep < bw_reps; rep++) {
            double t = bandwidth_rep(rank, peer, initiator, rep + 1, bw_iters, out, in, &bad);
            samples[rep] = (double)BIG_BYTES * 2 * bw_iters / t / 1e6;
        }
        if (initiator)
            bw_mbps = median(samples, bw_reps);
    }

    MPI_Barrier(MPI_COMM_WORLD);
    double max_lat, min_bw;
    long bad_total;
    MPI_Reduce(&lat_us, &max_lat, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bw_mbps, &min_bw, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
    MPI_Reduce(&bad, &bad_total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Bcast(&bad_total, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("pingpong: ranks %d pairs %d lat_8B_us %.2f bw_4MiB_MBps %.1f bad_ints %ld "
               "lat_iters %d bw_reps %d bw_iters %d\n",
               size, size / 2, max_lat, min_bw, bad_total, lat_iters, bw_reps, bw_iters);
        fflush(stdout);
    }
    free(samples);
    free(out);
    free(in);
    MPI_Finalize();
    return bad_total ? 1 : 0;
}
