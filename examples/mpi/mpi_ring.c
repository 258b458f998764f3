/* A token goes once around the ring of ranks (each adds its rank), then an allreduce checks
 * that every rank agrees on the sum 0+1+...+(n-1). Then every rank sends 1 MiB to the next one
 * and checks what it got from the previous one: far above the shared-memory transport's eager
 * limit (4 KiB in Open MPI's vader/sm), so its large-message path (single-copy CMA, or
 * copy-in/copy-out where CMA is unavailable) is exercised too. Exit status 0 only when all
 * agree; rank 0 prints one summary line, every rank one line with its host, the final token and
 * the sum. */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

#define BIG_INTS (1 << 18) /* 1 MiB of int */

static int big_out[BIG_INTS], big_in[BIG_INTS];

/* Sends a rank-specific pattern to the next rank; returns how many ints from the previous rank
 * were wrong. */
static int big_exchange(int rank, int size) {
    int next = (rank + 1) % size, prev = (rank + size - 1) % size, bad = 0;
    for (int i = 0; i < BIG_INTS; i++)
        big_out[i] = rank * 1000003 + i;
    MPI_Sendrecv(big_out, BIG_INTS, MPI_INT, next, 1, big_in, BIG_INTS, MPI_INT, prev, 1,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (int i = 0; i < BIG_INTS; i++)
        bad += big_in[i] != prev * 1000003 + i;
    return bad;
}

int main(int argc, char **argv) {
    int rank, size, token, sum, expect, bad, bad_total;
    char host[256];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    expect = size * (size - 1) / 2;
    if (size == 1) {
        token = 0;
    } else if (rank == 0) {
        token = 0;
        MPI_Send(&token, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
        MPI_Recv(&token, 1, MPI_INT, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(&token, 1, MPI_INT, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        token += rank;
        MPI_Send(&token, 1, MPI_INT, (rank + 1) % size, 0, MPI_COMM_WORLD);
    }
    /* Only rank 0 holds the full token; everyone checks the same value. */
    MPI_Bcast(&token, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    bad = big_exchange(rank, size);
    MPI_Allreduce(&bad, &bad_total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d on %s: token %d, allreduce %d\n", rank, size, host, token, sum);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    int ok = token == expect && sum == expect && bad_total == 0;
    if (rank == 0)
        printf("ring %s: %d ranks, token %d, allreduce %d (expected %d), 1 MiB messages: %d bad ints\n",
               ok ? "ok" : "FAILED", size, token, sum, expect, bad_total);
    MPI_Finalize();
    return ok ? 0 : 1;
}
