// safetensors checkpoints: the Hugging Face format, readable by the Python `safetensors` library
// and by every tool that reads Hugging Face weights.
//
// Layout of a file:
//   8 bytes   N, little-endian u64: the length of the header
//   N bytes   JSON header (UTF-8), padded with spaces to a multiple of 8 so the data is aligned:
//             {"__metadata__": {"key": "value", ...},                       (optional)
//              "<tensor name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//              ...}
//   the rest  the data section: each tensor's elements, row-major, little-endian, at
//             [begin, end) relative to the start of the data section. The tensors tile the data
//             section exactly: no gaps, no overlaps, nothing after the last one.
//
// Gradus reads and writes the dtypes it can hold: F32, F64, I64 and BF16 (BF16 is kept as raw
// 16-bit values in a DType::bf16 tensor; the CPU backend holds it but does not compute with it).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace gradus {

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;          // the "__metadata__" object; may be empty
};

// Writes `tensors` (any strides; written row-major) and `metadata` to `path`, atomically: a
// temporary file in the same directory is written, fsync'ed and renamed over `path`, so a crash or
// an error leaves any previous file intact (models/io/atomic_file.h).
// The file is byte-for-byte what the reference implementation writes: header entries ordered by
// dtype (I64, F64, F32, BF16: widest alignment first, which keeps every tensor aligned) and then by
// name, "__metadata__" first, compact JSON, padded with spaces to a multiple of 8 bytes; the
// metadata keys are sorted (the reference leaves their order to a hash map). Empty metadata writes
// no "__metadata__" entry.
// Throws gradus::Error naming the file and the tensor for: an undefined tensor, a duplicate or
// reserved ("__metadata__") name, a name or metadata string that is not valid UTF-8. Tensors on
// another device are copied to the CPU first.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole file into new contiguous CPU tensors. Everything is validated before any data is
// trusted, and every failure is a gradus::Error that names the file (and the tensor where there is
// one) and the problem: a file shorter than 8 bytes, a header length beyond the file or over 100
// MB, a header that is not a JSON object, a duplicate name, a tensor entry without "dtype", "shape"
// or "data_offsets" or with any other key, an unsupported dtype, a negative or non-integer size,
// offsets outside the data section, a byte count that does not match shape x dtype size,
// overlapping tensors, bytes that belong to no tensor (a gap, or trailing data after the last
// tensor), a
// "__metadata__" that is not a map of strings. A corrupt file never crashes the reader.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace gradus
