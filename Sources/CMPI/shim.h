// The MPI calls Kiln's data-parallel training uses (Sources/Distributed). Open MPI's handles
// (MPI_COMM_WORLD, MPI_FLOAT, ...) are macros over global symbols, which Swift cannot import:
// these inline functions return them.
#include <mpi.h>

static inline MPI_Comm kiln_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype kiln_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype kiln_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype kiln_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype kiln_mpi_uint64(void) { return MPI_UINT64_T; }
static inline int kiln_mpi_success(void) { return MPI_SUCCESS; }
static inline int kiln_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int kiln_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int kiln_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline MPI_Status *kiln_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler kiln_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int kiln_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
