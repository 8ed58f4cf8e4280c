// Access to oneDNN's row-major GEMMs (dnnl_sgemm and its int8 / bf16 siblings in the libdnnl that
// libtorch already loads), for kernels that call it directly with strided operands (nn::linear, nn::bmm_*, the
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

/// oneDNN C API (dnnl_gemm_u8s8s32): row-major C = alpha·(op(A) − ao)·(op(B) − bo) + beta·C + co
/// with A u8, B s8, C int32; offsetc 'F' (co[0] for all), 'C' (co[n]) or 'R' (co[m]). Returns 0 on
/// success. Without VNNI oneDNN adds pairs of u8·s8 products in int16 with saturation.
using GemmU8S8S32Fn = int (*)(char transa, char transb, char offsetc, int64_t M, int64_t N, int64_t K, float alpha,
                              const uint8_t* A, int64_t lda, uint8_t ao, const int8_t* B, int64_t ldb, int8_t bo,
                              float beta, int32_t* C, int64_t ldc, const int32_t* co);

/// oneDNN C API (dnnl_gemm_bf16bf16f32): row-major C = alpha·op(A)·op(B) + beta·C with A, B
/// bfloat16 (uint16 bit patterns) and C float32. Returns 0 on success (dnnl_unimplemented on CPUs
/// without AVX-512).
using GemmBf16Fn = int (*)(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                           int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

/// dnnl_gemm_u8s8s32 / dnnl_gemm_bf16bf16f32, looked up once as onednn_sgemm() (nullptr likewise).
GemmU8S8S32Fn onednn_gemm_u8s8s32();
GemmBf16Fn onednn_gemm_bf16();

}  // namespace loom::nn
