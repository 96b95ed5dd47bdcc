/* A stand-in for the NVIDIA driver library (libcuda.so.1) on machines without a GPU.
 *
 * Two uses, never a real run:
 *  - set-up links pygenn's CUDA backend against it where no driver is installed (only the
 *    library's name is recorded; a machine with a driver loads the real libcuda.so.1);
 *  - the CUDA compile tests (tests/genn/test_cuda_compile.py) preload it in their own
 *    subprocesses, so that GeNN's CUDA backend, asking the runtime about device 0 when it is
 *    created, sees one device of compute capability $DISTSNN_STUB_SM (default 90: an H100;
 *    80: an A100) and generates and nvcc-compiles code for it.
 * Everything that would need a device (allocation, modules, contexts) fails with "no device".
 *
 * Built by launch/setup.sh:
 *   gcc -shared -fPIC -O2 -I$CUDA_PATH/include -Wl,-soname,libcuda.so.1 stub_driver.c
 */
#include <stdlib.h>
#include <string.h>
#include <cuda.h>
#include <cuda_runtime_api.h>

/* --- CUDA runtime: what GeNN's CUDA backend asks when it is created (preloaded only) --- */
cudaError_t cudaGetDeviceCount(int *count) { *count = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaSetDeviceFlags(unsigned int flags) { (void)flags; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *version) { *version = CUDART_VERSION; return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t error) { (void)error; return "no CUDA device (stub driver)"; }

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int device) {
    const char *sm = getenv("DISTSNN_STUB_SM");
    int arch = sm ? atoi(sm) : 90;
    if (device != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof(*p));
    strcpy(p->name, arch >= 90 ? "NVIDIA H100 (stub driver)" : "NVIDIA A100 (stub driver)");
    p->major = arch / 10; p->minor = arch % 10;
    p->totalGlobalMem = 85045477376ULL;
    p->totalConstMem = 65536; p->sharedMemPerBlock = 49152;
    p->sharedMemPerMultiprocessor = 233472; p->sharedMemPerBlockOptin = 232448;
    p->regsPerBlock = 65536; p->regsPerMultiprocessor = 65536; p->warpSize = 32;
    p->maxThreadsPerBlock = 1024; p->maxThreadsPerMultiProcessor = 2048;
    p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
    p->multiProcessorCount = arch >= 90 ? 132 : 108; p->canMapHostMemory = 1;
    p->unifiedAddressing = 1; p->l2CacheSize = 52428800; p->memoryBusWidth = 5120;
    p->maxBlocksPerMultiProcessor = 32; p->concurrentKernels = 1; p->asyncEngineCount = 3;
    p->managedMemory = 1;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t size) { (void)ptr; (void)size; return cudaErrorNoDevice; }
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
    (void)ptr; (void)size; (void)flags; return cudaErrorNoDevice;
}

/* --- CUDA driver: the symbols pygenn's CUDA backend links (all resolved at import) --- */
CUresult cuGetErrorName(CUresult error, const char **name) {
    (void)error; *name = "CUDA_ERROR_NO_DEVICE"; return CUDA_SUCCESS;
}
CUresult cuDeviceGet(CUdevice *device, int ordinal) { (void)device; (void)ordinal; return CUDA_ERROR_NO_DEVICE; }
CUresult cuCtxCreate_v4(CUcontext *ctx, CUctxCreateParams *params, unsigned int flags, CUdevice dev) {
    (void)ctx; (void)params; (void)flags; (void)dev; return CUDA_ERROR_NO_DEVICE;
}
CUresult cuCtxDestroy_v2(CUcontext ctx) { (void)ctx; return CUDA_ERROR_NO_DEVICE; }
CUresult cuCtxSetCurrent(CUcontext ctx) { (void)ctx; return CUDA_ERROR_NO_DEVICE; }
CUresult cuModuleLoad(CUmodule *module, const char *path) { (void)module; (void)path; return CUDA_ERROR_NO_DEVICE; }
CUresult cuModuleUnload(CUmodule module) { (void)module; return CUDA_ERROR_NO_DEVICE; }
CUresult cuModuleGetFunction(CUfunction *fn, CUmodule module, const char *name) {
    (void)fn; (void)module; (void)name; return CUDA_ERROR_NO_DEVICE;
}
CUresult cuFuncGetAttribute(int *value, CUfunction_attribute attr, CUfunction fn) {
    (void)value; (void)attr; (void)fn; return CUDA_ERROR_NO_DEVICE;
}
