#ifndef FPNSTREAM_CBLAS_SHIM_H
#define FPNSTREAM_CBLAS_SHIM_H
#include <cblas.h>
#endif
