// Access to oneDNN's row-major float32 GEMM (dnnl_sgemm in the libdnnl that libtorch already
// loads), for kernels that call it directly with strided operands (nn::linear, nn::bmm_*, the
// fused DExTra layer). Kept out of linear.h so that its users do not depend on it.
#pragma once

#include <cstdint>

namespace loom::nn {

/// oneDNN C API (dnnl.h, dnnl_sgemm): row-major C = alpha·op(A)·op(B) + beta·C with op(A) [M, K],
/// op(B) [K, N], C [M, N]; transa/transb 'N' or 'T'; lda/ldb/ldc are row strides in elements.
/// Returns dnnl_success (0) or an error status.
using SgemmFn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                        float* C, int64_t ldc);

/// dnnl_sgemm found at start-up (looked up once), or nullptr when libtorch has no oneDNN or the
/// environment sets LOOM_GEMM=torch (then callers use libtorch's own products).
SgemmFn onednn_sgemm();

}  // namespace loom::nn
