// edgec-run: run an edgec model on the device with only the TVM runtime (no Python).
//
//   edgec-run MODEL_DIR [-i IN.npy ...] [-o OUT_DIR] [-n REPEAT]
//
// MODEL_DIR holds model.so, params.bin (TVM param dict), params.txt (parameter names in the order
// `main` takes them) and inputs.txt (one line per input: name dtype d0,d1,...). Inputs are .npy
// files in inputs.txt order (little-endian, C order); outputs are written as OUT_DIR/output_<i>.npy.
// Prints the median latency of REPEAT runs. Built by `edgec package` with the cross compiler.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::malloc(ffi::GetDataSize(*t)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

struct InputSpec {
  std::string name, dtype;
  std::vector<int64_t> shape;
};

static const DLDevice kCPU{kDLCPU, 0};

static std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// numpy dtype string (as in inputs.txt / .npy descr without byte order) <-> DLDataType
static DLDataType ToDL(const std::string& s) {
  static const std::pair<const char*, DLDataType> table[] = {
      {"float32", {kDLFloat, 32, 1}}, {"f4", {kDLFloat, 32, 1}}, {"float64", {kDLFloat, 64, 1}},
      {"f8", {kDLFloat, 64, 1}},      {"float16", {kDLFloat, 16, 1}}, {"f2", {kDLFloat, 16, 1}},
      {"int64", {kDLInt, 64, 1}},     {"i8", {kDLInt, 64, 1}},    {"int32", {kDLInt, 32, 1}},
      {"i4", {kDLInt, 32, 1}},        {"int8", {kDLInt, 8, 1}},   {"i1", {kDLInt, 8, 1}},
      {"uint8", {kDLUInt, 8, 1}},     {"u1", {kDLUInt, 8, 1}},    {"bool", {kDLBool, 8, 1}},
      {"b1", {kDLBool, 8, 1}}};
  for (auto& e : table)
    if (s == e.first) return e.second;
  throw std::runtime_error("unsupported dtype " + s);
}

static std::string NpyDescr(DLDataType t) {
  char kind = t.code == kDLFloat ? 'f' : t.code == kDLInt ? 'i' : t.code == kDLBool ? 'b' : 'u';
  return std::string(t.bits == 8 ? "|" : "<") + kind + std::to_string(t.bits / 8);
}

static std::string HeaderField(const std::string& header, const std::string& key) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) throw std::runtime_error("npy header lacks " + key);
  size_t start = header.find_first_not_of(": ", k + key.size() + 2);
  size_t end = header[start] == '(' ? header.find(')', start) + 1
               : header[start] == '\'' ? header.find('\'', start + 1) + 1
                                       : header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

static ffi::Tensor ReadNpy(const std::string& path, const InputSpec& spec) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw std::runtime_error(path + " is not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint16_t h16;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hlen = h16;
  } else {
    f.read(reinterpret_cast<char*>(&hlen), 4);
  }
  std::string header(hlen, ' ');
  f.read(&header[0], hlen);
  std::string descr = HeaderField(header, "descr");
  if (HeaderField(header, "fortran_order") != "False")
    throw std::runtime_error(path + ": Fortran order is not supported");
  if (descr[1] == '>') throw std::runtime_error(path + ": big-endian data is not supported");
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
  std::vector<InputSpec> specs;
  for (const std::string& line : ReadLines(dir + "/inputs.txt")) {
    std::stringstream ss(line);
    InputSpec s;
    std::string dims;
    ss >> s.name >> s.dtype >> dims;
    std::stringstream ds(dims);
    for (std::string d; std::getline(ds, d, ',');)
      if (!d.empty()) s.shape.push_back(std::stoll(d));
    specs.push_back(s);
  }
  if (in_files.size() != specs.size())
    throw std::runtime_error("the model takes " + std::to_string(specs.size()) + " input(s) (see " + dir +
                             "/inputs.txt), got " + std::to_string(in_files.size()));
  std::vector<ffi::Any> args;
  for (size_t i = 0; i < specs.size(); ++i) args.push_back(ReadNpy(in_files[i], specs[i]));

  auto load_params = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile");
  auto params = load_params(ffi::String(dir + "/params.bin")).cast<ffi::Map<ffi::String, ffi::Tensor>>();
  for (const std::string& name : ReadLines(dir + "/params.txt")) {
    auto it = params.find(name);
    if (it == params.end()) throw std::runtime_error("params.bin lacks parameter " + name);
    args.push_back((*it).second);
  }

  ffi::Module lib = ffi::Module::LoadFromFile(dir + "/model.so");
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);  // 2 = pooled allocator
  ffi::Function main_fn = vm->GetFunction("main").value();

  std::vector<ffi::AnyView> views(args.begin(), args.end());
  ffi::Any result;
  main_fn.CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);  // warm-up
  std::vector<double> ms;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    main_fn.CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<ffi::Tensor> outs = Outputs(result);
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
