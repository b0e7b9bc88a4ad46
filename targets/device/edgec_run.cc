// edgec-run: run an edgec model on the device with only the TVM runtime (no Python).
//
//   edgec-run MODEL_DIR [-i IN.npy ...] [-o OUT_DIR] [-n REPEAT]
//
// MODEL_DIR holds the artifact's members under their fixed names: manifest.json, model.so, params.bin.
// Before anything is loaded the runner applies the checks of edgec's Python loader: the manifest's
// format and the fields it uses (inputs, params, target arch, member hashes), the sha256 of model.so
// and params.bin against the manifest, params.bin parsed with bounds checks and holding exactly the
// manifest's params, model.so a complete ELF shared object for this machine (a truncated one would
// die with SIGBUS in dlopen). Signatures (manifest.sig) are not verified here: check them with
// `edgec` where the bundle is made. Inputs are .npy files in manifest input order (little-endian, C
// order); outputs are written as OUT_DIR/output_<i>.npy. Prints the median latency of REPEAT runs;
// the timed loop allocates nothing (arguments built once, outputs from the VM's pooled allocator).
// Built by `edgec package` with the cross compiler.
//
// A CUDA model (manifest target.device "cuda", e.g. target jetson-orin) runs on GPU 0: the runner
// loads TVM's CUDA backend, libtvm_runtime_cuda.so, from the bundle's lib/ (beside the CUDA runtime
// libcudart.so.13 it needs; libcuda.so.1 is the NVIDIA driver's), copies weights to the GPU once,
// and each timed run copies the inputs in and the outputs back, as a caller would.
#include <dlfcn.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;
namespace json = tvm::ffi::json;

static const char* kFormat = "edgec-artifact/2";
static const size_t kMaxManifestBytes = 64u << 20;

struct CPUAlloc {  // TVM's kernels assume 64-byte aligned buffers
  void AllocData(DLTensor* t) {
    size_t bytes = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!t->data) throw std::runtime_error("out of memory");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

struct InputSpec {
  std::string name, dtype;
  std::vector<int64_t> shape;
};

static const DLDevice kCPU{kDLCPU, 0};

static std::string ReadFile(const std::string& path, size_t limit) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::streamoff size = f.tellg();
  if (size < 0 || static_cast<uint64_t>(size) > limit) throw std::runtime_error(path + " is too large");
  std::string data(static_cast<size_t>(size), '\0');
  f.seekg(0);
  if (!f.read(&data[0], size)) throw std::runtime_error("cannot read " + path);
  return data;
}

// ---- sha256 (FIPS 180-4) -------------------------------------------------------------------------
class Sha256 {
 public:
  void Update(const uint8_t* p, size_t n) {
    total_ += n;
    while (n) {
      size_t k = std::min(n, size_t{64} - fill_);
      std::memcpy(buf_ + fill_, p, k);
      fill_ += k, p += k, n -= k;
      if (fill_ == 64) Block(), fill_ = 0;
    }
  }
  std::string HexDigest() {
    uint64_t bits = total_ * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (fill_ < 56 ? 56 : 120) - fill_;
    for (int i = 0; i < 8; ++i) pad[padlen + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    Update(pad, padlen + 8);
    char hex[65];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", h_[i]);
    return std::string(hex, 64);
  }

 private:
  static uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void Block() {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(buf_[4 * i]) << 24 | uint32_t(buf_[4 * i + 1]) << 16 | uint32_t(buf_[4 * i + 2]) << 8 |
             buf_[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    uint32_t v[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += v[i];
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf_[64];
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

static std::string Sha256Hex(const std::string& data) {
  Sha256 s;
  s.Update(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  return s.HexDigest();
}

// ---- dtypes --------------------------------------------------------------------------------------
// numpy dtype string (as in the manifest / .npy descr without byte order) <-> DLDataType
static DLDataType ToDL(const std::string& s) {
  static const std::pair<const char*, DLDataType> table[] = {
      {"float32", {kDLFloat, 32, 1}}, {"f4", {kDLFloat, 32, 1}}, {"float64", {kDLFloat, 64, 1}},
      {"f8", {kDLFloat, 64, 1}},      {"float16", {kDLFloat, 16, 1}}, {"f2", {kDLFloat, 16, 1}},
      {"int64", {kDLInt, 64, 1}},     {"i8", {kDLInt, 64, 1}},    {"int32", {kDLInt, 32, 1}},
      {"i4", {kDLInt, 32, 1}},        {"int16", {kDLInt, 16, 1}}, {"i2", {kDLInt, 16, 1}},
      {"int8", {kDLInt, 8, 1}},       {"i1", {kDLInt, 8, 1}},     {"uint8", {kDLUInt, 8, 1}},
      {"u1", {kDLUInt, 8, 1}},        {"uint16", {kDLUInt, 16, 1}}, {"u2", {kDLUInt, 16, 1}},
      {"uint32", {kDLUInt, 32, 1}},   {"u4", {kDLUInt, 32, 1}},   {"uint64", {kDLUInt, 64, 1}},
      {"u8", {kDLUInt, 64, 1}},       {"bool", {kDLBool, 8, 1}},  {"b1", {kDLBool, 8, 1}}};
  for (auto& e : table)
    if (s == e.first) return e.second;
  throw std::runtime_error("unsupported dtype " + s);
}

static std::string NpyDescr(DLDataType t) {
  char kind = t.code == kDLFloat ? 'f' : t.code == kDLInt ? 'i' : t.code == kDLBool ? 'b' : 'u';
  return std::string(t.bits == 8 ? "|" : "<") + kind + std::to_string(t.bits / 8);
}

// ---- the manifest --------------------------------------------------------------------------------
struct Manifest {
  std::vector<InputSpec> inputs;
  std::vector<std::string> params;
  std::map<std::string, std::string> files;  // member -> sha256
  std::string arch;
  std::string device = "cpu";  // target.device: cpu or cuda
};

static json::Object Obj(const ffi::Any& v, const std::string& what) {
  auto o = v.try_cast<json::Object>();
  if (!o) throw std::runtime_error("manifest: " + what + " must be an object");
  return *o;
}

static ffi::Any Field(const json::Object& o, const std::string& key, const std::string& where) {
  auto it = o.find(ffi::String(key));
  if (it == o.end()) throw std::runtime_error("manifest: " + where + " lacks '" + key + "'");
  return (*it).second;
}

static std::string Str(const ffi::Any& v, const std::string& what) {
  auto s = v.try_cast<ffi::String>();
  if (!s) throw std::runtime_error("manifest: " + what + " must be a string");
  return std::string(*s);
}

static json::Array Arr(const ffi::Any& v, const std::string& what) {
  auto a = v.try_cast<json::Array>();
  if (!a) throw std::runtime_error("manifest: " + what + " must be a list");
  return *a;
}

static Manifest ReadManifest(const std::string& dir) {
  ffi::String error;
  json::Value root = json::Parse(ffi::String(ReadFile(dir + "/manifest.json", kMaxManifestBytes)), &error);
  if (!error.empty()) throw std::runtime_error("manifest.json is not valid JSON: " + std::string(error));
  json::Object m = Obj(root, "the manifest");
  if (Str(Field(m, "format", "the manifest"), "format") != kFormat)
    throw std::runtime_error(std::string("manifest: format is not ") + kFormat + " (rebuild the bundle)");
  Manifest out;
  json::Object target = Obj(Field(m, "target", "the manifest"), "target");
  out.arch = Str(Field(target, "arch", "target"), "target.arch");
  if (target.count("device")) out.device = Str(target.at("device"), "target.device");
  if (out.device != "cpu" && out.device != "cuda") throw std::runtime_error("manifest: unknown device " + out.device);
  for (const auto& kv : Obj(Field(m, "files", "the manifest"), "files")) {
    std::string name = Str(kv.first, "a files key"), digest = Str(kv.second, "a sha256");
    if (name != "model.so" && name != "params.bin" && name != "kernels.cu")
      throw std::runtime_error("manifest: unexpected member '" + name + "'");
    if (digest.size() != 64 || digest.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw std::runtime_error("manifest: the sha256 of " + name + " is malformed");
    out.files[name] = digest;
  }
  if (!out.files.count("model.so") || !out.files.count("params.bin"))
    throw std::runtime_error("manifest: files must list model.so and params.bin");
  for (const ffi::Any& p : Arr(Field(m, "params", "the manifest"), "params")) out.params.push_back(Str(p, "a param"));
  for (const ffi::Any& item : Arr(Field(m, "inputs", "the manifest"), "inputs")) {
    json::Object o = Obj(item, "an input");
    InputSpec s;
    s.name = Str(Field(o, "name", "an input"), "an input name");
    s.dtype = Str(Field(o, "dtype", "input " + s.name), "a dtype");
    ToDL(s.dtype);
    for (const ffi::Any& d : Arr(Field(o, "shape", "input " + s.name), "a shape")) {
      auto v = d.try_cast<int64_t>();
      if (!v || *v < 0 || *v > (int64_t{1} << 40)) throw std::runtime_error("manifest: input " + s.name + " has a bad shape");
      s.shape.push_back(*v);
    }
    if (s.shape.size() > 32) throw std::runtime_error("manifest: input " + s.name + " has too many dims");
    out.inputs.push_back(s);
  }
  return out;
}

static std::string CheckedMember(const std::string& dir, const std::string& name, const Manifest& m) {
  std::string data = ReadFile(dir + "/" + name, SIZE_MAX / 2);
  if (Sha256Hex(data) != m.files.at(name))
    throw std::runtime_error(name + " does not match its sha256 in manifest.json (corrupt or tampered)");
  return data;
}

// ---- params.bin: TVM's param dict, parsed with bounds checks -------------------------------------
class Reader {
 public:
  explicit Reader(const std::string& d) : d_(d) {}
  template <typename T>
  T Take() {
    if (pos_ + sizeof(T) > d_.size()) throw std::runtime_error("params.bin is malformed (ends early)");
    T v;
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const char* Bytes(uint64_t n) {
    if (n > d_.size() - pos_) throw std::runtime_error("params.bin is malformed (runs past the end)");
    const char* p = d_.data() + pos_;
    pos_ += n;
    return p;
  }
  bool AtEnd() const { return pos_ == d_.size(); }

 private:
  const std::string& d_;
  size_t pos_ = 0;
};

static std::map<std::string, ffi::Tensor> ReadParams(const std::string& data, const Manifest& m) {
  Reader r(data);
  if (r.Take<uint64_t>() != 0xF7E58D4F05049CB7ull) throw std::runtime_error("params.bin is not a TVM param dict");
  r.Take<uint64_t>();
  uint64_t count = r.Take<uint64_t>();
  if (count != m.params.size()) throw std::runtime_error("params.bin does not hold the manifest's params");
  std::vector<std::string> names;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t n = r.Take<uint64_t>();
    names.emplace_back(r.Bytes(n), n);
  }
  if (r.Take<uint64_t>() != count) throw std::runtime_error("params.bin is malformed (names != tensors)");
  std::map<std::string, ffi::Tensor> out;
  for (const std::string& name : names) {
    if (r.Take<uint64_t>() != 0xDD5E40F096B4A13Full) throw std::runtime_error("params.bin: bad tensor header");
    r.Take<uint64_t>();
    r.Take<int32_t>(), r.Take<int32_t>();  // device
    int32_t ndim = r.Take<int32_t>();
    DLDataType dt{r.Take<uint8_t>(), r.Take<uint8_t>(), r.Take<uint16_t>()};
    if (ndim < 0 || ndim > 32 || dt.lanes != 1 || dt.bits % 8 || dt.bits == 0 || dt.bits > 64)
      throw std::runtime_error("params.bin: tensor " + name + " has a bad header");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; ++i) {
      int64_t d = r.Take<int64_t>();
      if (d < 0 || (d && numel > (uint64_t{1} << 40) / static_cast<uint64_t>(d)))
        throw std::runtime_error("params.bin: tensor " + name + " has a bad shape");
      numel *= static_cast<uint64_t>(d);
      shape.push_back(d);
    }
    int64_t nbytes = r.Take<int64_t>();
    if (nbytes < 0 || static_cast<uint64_t>(nbytes) != numel * (dt.bits / 8))
      throw std::runtime_error("params.bin: tensor " + name + " declares the wrong size");
    const char* src = r.Bytes(static_cast<uint64_t>(nbytes));
    ffi::Tensor t = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::Shape(shape), dt, kCPU);
    if (nbytes) std::memcpy(t.data_ptr(), src, static_cast<size_t>(nbytes));
    if (!out.emplace(name, t).second) throw std::runtime_error("params.bin holds " + name + " twice");
  }
  if (!r.AtEnd()) throw std::runtime_error("params.bin has trailing bytes");
  for (const std::string& p : m.params)
    if (!out.count(p)) throw std::runtime_error("params.bin lacks parameter " + p);
  return out;
}

// ---- model.so: a complete ELF shared object for this machine -------------------------------------
static void CheckLibrary(const std::string& d, const std::string& arch) {
#if defined(__aarch64__)
  const uint16_t machine = 183;
  const char* here = "aarch64";
#elif defined(__x86_64__)
  const uint16_t machine = 62;
  const char* here = "x86_64";
#else
#error "edgec-run supports aarch64 and x86_64"
#endif
  if (arch != here) throw std::runtime_error("the model holds " + arch + " code; this runner is " + here);
  auto u16 = [&](size_t o) { uint16_t v; std::memcpy(&v, d.data() + o, 2); return v; };
  auto u32 = [&](size_t o) { uint32_t v; std::memcpy(&v, d.data() + o, 4); return v; };
  auto u64 = [&](size_t o) { uint64_t v; std::memcpy(&v, d.data() + o, 8); return v; };
  auto fits = [&](uint64_t off, uint64_t len) { return off <= d.size() && len <= d.size() - off; };
  if (d.size() < 64 || d.compare(0, 4, "\x7f" "ELF") != 0 || d[4] != 2 || d[5] != 1)
    throw std::runtime_error("model.so is not a 64-bit little-endian ELF file");
  if (u16(16) != 3 || u16(18) != machine) throw std::runtime_error("model.so is not a shared object for " + arch);
  uint64_t phoff = u64(32), shoff = u64(40);
  uint16_t phentsize = u16(54), phnum = u16(56), shentsize = u16(58), shnum = u16(60);
  if (!phnum || phentsize < 56 || !fits(phoff, uint64_t{phnum} * phentsize))
    throw std::runtime_error("model.so has no complete program header table (truncated)");
  for (uint16_t i = 0; i < phnum; ++i)
    if (!fits(u64(phoff + i * phentsize + 8), u64(phoff + i * phentsize + 32)))
      throw std::runtime_error("model.so: a segment runs past the end of the file (truncated)");
  if (shnum) {
    if (shentsize < 64 || !fits(shoff, uint64_t{shnum} * shentsize))
      throw std::runtime_error("model.so has no complete section header table (truncated)");
    for (uint16_t i = 0; i < shnum; ++i) {
      size_t h = shoff + i * shentsize;
      if (u32(h + 4) != 8 && !fits(u64(h + 24), u64(h + 32)))  // 8 = SHT_NOBITS
        throw std::runtime_error("model.so: a section runs past the end of the file (truncated)");
    }
  }
}

// ---- .npy ------------------------------------------------------------------------------------------
static std::string HeaderField(const std::string& header, const std::string& key) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error("npy header lacks " + key);
  size_t start = header.find_first_not_of(": ", k + key.size() + 2);
  if (start == std::string::npos) throw std::runtime_error("npy header is malformed");
  size_t end = header[start] == '(' ? header.find(')', start) + 1
               : header[start] == '\'' ? header.find('\'', start + 1) + 1
                                       : header.find_first_of(",}", start);
  if (end == std::string::npos || end < start) throw std::runtime_error("npy header is malformed");
  return header.substr(start, end - start);
}

static ffi::Tensor ReadNpy(const std::string& path, const InputSpec& spec) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw std::runtime_error(path + " is not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint16_t h16 = 0;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hlen = h16;
  } else {
    f.read(reinterpret_cast<char*>(&hlen), 4);
  }
  if (!f || hlen > (1u << 20)) throw std::runtime_error(path + " has a bad .npy header");
  std::string header(hlen, ' ');
  f.read(&header[0], hlen);
  std::string descr = HeaderField(header, "descr");
  if (HeaderField(header, "fortran_order") != "False")
    throw std::runtime_error(path + ": Fortran order is not supported");
  if (descr.size() < 4 || descr[1] == '>') throw std::runtime_error(path + ": big-endian data is not supported");
  std::string shape_text = HeaderField(header, "shape");
  std::vector<int64_t> shape;
  std::stringstream ss(shape_text.substr(1, shape_text.size() - 2));
  for (std::string d; std::getline(ss, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(d));
  DLDataType dt = ToDL(descr.substr(2, descr.size() - 3));
  DLDataType want = ToDL(spec.dtype);
  if (shape != spec.shape || dt.code != want.code || dt.bits != want.bits) {
    std::string s;
    for (auto d : spec.shape) s += std::to_string(d) + ",";
    throw std::runtime_error(path + ": input '" + spec.name + "' must be " + spec.dtype + "[" + s +
                             "], the file holds " + descr + " " + shape_text);
  }
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::Shape(shape), dt, kCPU);
  size_t bytes = ffi::GetDataSize(t);
  if (!f.read(static_cast<char*>(t.data_ptr()), bytes)) throw std::runtime_error(path + " is truncated");
  return t;
}

static void WriteNpy(const std::string& path, const ffi::Tensor& t) {
  int ndim = static_cast<int>(t.ndim());
  std::string shape = "(";
  for (int i = 0; i < ndim; ++i) shape += std::to_string(t.shape()[i]) + (ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
  shape += ")";
  std::string header = "{'descr': '" + NpyDescr(t.dtype()) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  uint16_t hlen = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(reinterpret_cast<const char*>(&hlen), 2);
  f << header;
  f.write(static_cast<const char*>(t.data_ptr()), ffi::GetDataSize(t));
  if (!f) throw std::runtime_error("cannot write " + path);
}

// ---- CUDA -----------------------------------------------------------------------------------------
static DLDevice StartDevice(const std::string& device) {
  if (device == "cpu") return kCPU;
  if (!dlopen("libtvm_runtime_cuda.so", RTLD_NOW | RTLD_GLOBAL))  // found through the runner's rpath
    throw std::runtime_error(std::string("cannot start TVM's CUDA backend: ") + dlerror() +
                             " (lib/ holds it and libcudart.so.13; libcuda.so.1 comes with the NVIDIA driver, "
                             "which must support CUDA 13)");
  return DLDevice{kDLCUDA, 0};
}

static void Copy(const ffi::Tensor& from, const ffi::Tensor& to) {
  static auto copy = ffi::Function::GetGlobalRequired("runtime.TVMTensorCopyFromTo");
  copy(from, to);
}

static ffi::Tensor Empty(const ffi::Tensor& like, DLDevice dev) {
  ffi::Shape shape(std::vector<int64_t>(like.shape().begin(), like.shape().end()));
  if (dev.device_type == kDLCPU) return ffi::Tensor::FromNDAlloc(CPUAlloc(), shape, like.dtype(), kCPU);
  static auto alloc = ffi::Function::GetGlobalRequired("runtime.TVMTensorAllocWithScope");
  return alloc(shape, like.dtype(), dev, ffi::Optional<ffi::String>()).cast<ffi::Tensor>();
}

static std::vector<ffi::Tensor> Outputs(const ffi::Any& result) {
  if (auto t = result.as<ffi::Tensor>()) return {*t};
  std::vector<ffi::Tensor> out;
  for (const ffi::Any& item : result.cast<ffi::Array<ffi::Any>>()) out.push_back(item.cast<ffi::Tensor>());
  return out;
}

static int Run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cerr << "usage: edgec-run MODEL_DIR [-i IN.npy ...] [-o OUT_DIR] [-n REPEAT]\n";
    return 2;
  }
  std::string dir = argv[1], out_dir = ".";
  std::vector<std::string> in_files;
  int repeat = 10;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-i") {
      while (i + 1 < argc && argv[i + 1][0] != '-') in_files.push_back(argv[++i]);
    } else if (a == "-o" && i + 1 < argc) {
      out_dir = argv[++i];
    } else if (a == "-n" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      throw std::runtime_error("unknown argument " + a);
    }
  }
  Manifest manifest = ReadManifest(dir);
  std::string lib_data = CheckedMember(dir, "model.so", manifest);
  CheckLibrary(lib_data, manifest.arch);
  lib_data.clear();
  std::map<std::string, ffi::Tensor> params = ReadParams(CheckedMember(dir, "params.bin", manifest), manifest);

  const std::vector<InputSpec>& specs = manifest.inputs;
  if (in_files.size() != specs.size())
    throw std::runtime_error("the model takes " + std::to_string(specs.size()) + " input(s) (see " + dir +
                             "/inputs.txt), got " + std::to_string(in_files.size()));
  DLDevice dev = StartDevice(manifest.device);
  bool gpu = dev.device_type != kDLCPU;
  ffi::Module lib = ffi::Module::LoadFromFile(dir + "/model.so");
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  std::vector<ffi::Tensor> host_inputs, dev_inputs;
  std::vector<ffi::Any> args;
  for (size_t i = 0; i < specs.size(); ++i) {
    host_inputs.push_back(ReadNpy(in_files[i], specs[i]));
    dev_inputs.push_back(gpu ? Empty(host_inputs[i], dev) : host_inputs[i]);
    args.push_back(dev_inputs[i]);
  }
  for (const std::string& name : manifest.params) {
    ffi::Tensor p = params.at(name);
    if (gpu) {
      ffi::Tensor d = Empty(p, dev);
      Copy(p, d);
      p = d;
    }
    args.push_back(p);
  }

  if (gpu)  // the GPU, and the CPU for the host side; 2 = pooled allocator
    vm->GetFunction("vm_initialization").value()(static_cast<int>(dev.device_type), 0, 2, static_cast<int>(kDLCPU), 0, 2);
  else
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
  ffi::Function main_fn = vm->GetFunction("main").value();
  auto sync = ffi::Function::GetGlobalRequired("runtime.Device_StreamSync");

  std::vector<ffi::AnyView> views(args.begin(), args.end());
  ffi::Any result;
  std::vector<ffi::Tensor> outs;
  auto run = [&] {
    for (size_t i = 0; gpu && i < host_inputs.size(); ++i) Copy(host_inputs[i], dev_inputs[i]);
    main_fn.CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);
    if (!gpu) return;
    std::vector<ffi::Tensor> dev_outs = Outputs(result);
    for (size_t i = 0; i < dev_outs.size(); ++i) {
      if (outs.size() <= i) outs.push_back(Empty(dev_outs[i], kCPU));  // allocated by the warm-up run
      Copy(dev_outs[i], outs[i]);
    }
    sync(dev, nullptr);
  };
  run();  // warm-up
  std::vector<double> ms(repeat);
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    ms[r] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!gpu) outs = Outputs(result);
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string path = out_dir + "/output_" + std::to_string(i) + ".npy";
    WriteNpy(path, outs[i]);
    std::cout << "wrote " << path << "\n";
  }
  std::sort(ms.begin(), ms.end());
  std::printf("latency: median %.3f ms, min %.3f ms over %d run(s)\n", ms[ms.size() / 2], ms[0], repeat);
  return 0;
}

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "edgec-run: error: " << e.what() << "\n";
    return 1;
  }
}
