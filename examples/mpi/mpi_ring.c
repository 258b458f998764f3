/* A token goes once around the ring of ranks (each adds its rank), then an allreduce checks
 * that every rank agrees on the sum 0+1+...+(n-1). Exit status 0 only when both agree; rank 0
 * prints one summary line, every rank one line with its host, the final token and the sum. */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size, token, sum, expect;
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
    printf("rank %d of %d on %s: token %d, allreduce %d\n", rank, size, host, token, sum);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        printf("ring %s: %d ranks, token %d, allreduce %d (expected %d)\n",
               token == expect && sum == expect ? "ok" : "FAILED", size, token, sum, expect);
    MPI_Finalize();
    return token == expect && sum == expect ? 0 : 1;
}
