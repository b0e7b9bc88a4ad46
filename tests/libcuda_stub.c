/* A stand-in for the NVIDIA driver (libcuda.so.1) on machines without one: it answers the
   driver API queries edgec's runtime makes from environment variables (STUB_CUDA_DRIVER,
   STUB_CUDA_DEVICES, STUB_CUDA_SM) and fails everything else. Tests only. */
#include <stdlib.h>
#include <string.h>
static int env(const char *name, int dflt) { const char *v = getenv(name); return v ? atoi(v) : dflt; }
int cuInit(unsigned flags) { return 0; }
int cuDriverGetVersion(int *v) { *v = env("STUB_CUDA_DRIVER", 13000); return 0; }
int cuDeviceGetCount(int *n) { *n = env("STUB_CUDA_DEVICES", 1); return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return 0; }
int cuDeviceGetAttribute(int *v, int attr, int dev) {
  int sm = env("STUB_CUDA_SM", 80); *v = attr == 75 ? sm / 10 : attr == 76 ? sm % 10 : 0; return 0; }
int cuDeviceGetName(char *name, int len, int dev) { strncpy(name, "Stub GPU", len); return 0; }
int cuGetErrorName(int rc, const char **s) { *s = "CUDA_ERROR_STUB"; return 0; }
int cuGetErrorString(int rc, const char **s) { *s = "stub driver"; return 0; }
#define FAIL(f) int f() { return 34; }
FAIL(cuFuncSetAttribute) FAIL(cuLaunchKernelEx) FAIL(cuModuleGetFunction) FAIL(cuModuleLoadData)
FAIL(cuModuleUnload) FAIL(cuTensorMapEncodeTiled)
