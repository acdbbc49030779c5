#include "models/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>

#include "core/strided_loop.h"
#include "models/io/atomic_file.h"
#include "models/io/json_depth.h"

namespace gradus {

// The format is little-endian; tensors are written and read as they sit in memory.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  const char* name;  // as written in the header
  int rank;          // position in the reference's dtype order (alignment, ascending)
};
// Only the dtypes Gradus holds; ranks are those of the reference implementation's Dtype enum
// (BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64), whose order sets the
// order of the tensors in a file.
constexpr std::array<DTypeInfo, 4> kDTypes{{
    {DType::bf16, "BF16", 8},
    {DType::f32, "F32", 11},
    {DType::f64, "F64", 12},
    {DType::i64, "I64", 13},
}};

const DTypeInfo& info_of(DType t) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == t) return d;
  GRADUS_FAIL("safetensors", "no safetensors name for dtype {}", dtype_name(t));
}

std::optional<DType> parse_st_dtype(std::string_view s) {
  for (const DTypeInfo& d : kDTypes)
    if (s == d.name) return d.dtype;
  return std::nullopt;
}

// A contiguous CPU tensor with x's elements (x itself when it already is one). Works for every
// dtype, bf16 included (moved as raw 16-bit values), unlike the typed raw_contiguous.
Tensor contiguous_cpu(const Tensor& x) {
  Tensor src = x;
  if (!src.device().is_cpu()) {
    Tensor cpu = Tensor::empty(x.shape(), x.dtype(), kCPU);
    raw_copy_(cpu, x);  // cross-device copy by the owning backend
    src = cpu;
  }
  if (src.is_contiguous()) return src;
  if (src.dtype() != DType::bf16) return raw_contiguous(src);
  Tensor out = Tensor::empty(src.shape(), src.dtype(), kCPU);
  auto* d = static_cast<uint16_t*>(out.raw_data());
  const auto* s = static_cast<const uint16_t*>(src.raw_data());
  const Strides dst_strides = out.strides();
  strided_loop<2>(src.shape(), {&dst_strides, &src.strides()},
                  [&](const std::array<int64_t, 2>& o) { d[o[0]] = s[o[1]]; });
  return out;
}

std::string errno_text(int err) { return std::strerror(err); }

// ---------------------------------------------------------------- reading

// An open file read with pread; errors name the file and carry strerror.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      int err = errno;
      GRADUS_FAIL("load_safetensors", "cannot open '{}': {}", path, errno_text(err));
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      int err = errno;
      ::close(fd_);
      GRADUS_FAIL("load_safetensors", "cannot stat '{}': {}", path, errno_text(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      GRADUS_FAIL("load_safetensors", "'{}' is not a regular file", path);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }

  void read(void* dst, uint64_t offset, uint64_t n) const {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1ull << 30));
      ssize_t r = ::pread(fd_, p, chunk, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        int err = errno;
        GRADUS_FAIL("load_safetensors", "reading '{}' failed: {}", path_, errno_text(err));
      }
      if (r == 0)
        GRADUS_FAIL("load_safetensors", "'{}' ended early (was it truncated while being read?)",
                    path_);
      p += r;
      offset += static_cast<uint64_t>(r);
      n -= static_cast<uint64_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

std::string json_kind(const nlohmann::json& v) { return v.type_name(); }

// A non-negative integer that fits in int64 (sizes and offsets), or nullopt.
std::optional<uint64_t> as_size(const nlohmann::json& v) {
  if (!v.is_number_integer()) return std::nullopt;  // floats and non-numbers
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return u;
  }
  int64_t i = v.get<int64_t>();
  if (i < 0) return std::nullopt;
  return static_cast<uint64_t>(i);
}

[[noreturn]] void entry_error(const std::string& path, const std::string& name,
                              const std::string& what) {
  GRADUS_FAIL("load_safetensors", "'{}': tensor '{}': {}", path, name, what);
}

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v) {
  auto fail = [&](const std::string& what) { entry_error(path, name, what); };
  if (!v.is_object()) fail(fmt::format("expected an object, found a {}", json_kind(v)));
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      fail(fmt::format("unexpected key \"{}\" (a tensor has dtype, shape and data_offsets)",
                       it.key()));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!v.contains(key)) fail(fmt::format("missing \"{}\"", key));

  Entry e;
  e.name = name;
  const auto& dt = v["dtype"];
  if (!dt.is_string()) fail(fmt::format("\"dtype\" must be a string, found a {}", json_kind(dt)));
  std::optional<DType> parsed = parse_st_dtype(dt.get<std::string>());
  if (!parsed)
    fail(fmt::format("unsupported dtype \"{}\" (Gradus reads F32, F64, BF16 and I64)",
                     dt.get<std::string>()));
  e.dtype = *parsed;

  const auto& shape = v["shape"];
  if (!shape.is_array())
    fail(fmt::format("\"shape\" must be an array, found a {}", json_kind(shape)));
  // The byte count, checked for overflow at each step (a corrupt shape must not wrap around).
  uint64_t nbytes = dtype_size(e.dtype);
  bool overflow = false;
  for (const auto& d : shape) {
    std::optional<uint64_t> s = as_size(d);
    if (!s)
      fail(
          fmt::format("\"shape\" {} holds {}, not a non-negative integer", shape.dump(), d.dump()));
    e.shape.push_back(static_cast<int64_t>(*s));
    if (*s != 0 && nbytes > std::numeric_limits<uint64_t>::max() / *s)
      overflow = true;
    else
      nbytes *= *s;
  }
  // A zero-sized axis makes an overflowing product of the others irrelevant.
  if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) nbytes = 0, overflow = false;
  if (overflow) fail(fmt::format("shape {} is too large to address", shape_str(e.shape)));

  const auto& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2)
    fail(fmt::format("\"data_offsets\" must be [begin, end], found {}", off.dump()));
  std::optional<uint64_t> b = as_size(off[0]), en = as_size(off[1]);
  if (!b || !en)
    fail(fmt::format("\"data_offsets\" {} must hold non-negative integers", off.dump()));
  if (*en < *b) fail(fmt::format("\"data_offsets\" [{}, {}] end before they begin", *b, *en));
  e.begin = *b;
  e.end = *en;
  if (e.end - e.begin != nbytes)
    fail(fmt::format("\"data_offsets\" [{}, {}] span {} bytes but shape {} of {} needs {}", e.begin,
                     e.end, e.end - e.begin, shape_str(e.shape), dt.get<std::string>(), nbytes));
  return e;
}

// ---------------------------------------------------------------- writing

void put_u64_le(std::ostream& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out.write(b, 8);
}

}  // namespace

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  constexpr const char* kWhere = "save_safetensors";
  struct Item {
    const std::string* name;
    Tensor data;  // contiguous, on the CPU
    int rank;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  std::set<std::string_view> seen;
  for (const auto& [name, t] : tensors) {
    GRADUS_CHECK(name != kMetadataKey, kWhere, "'{}': \"{}\" is reserved for the metadata", path,
                 name);
    GRADUS_CHECK(seen.insert(name).second, kWhere, "'{}': tensor '{}' appears twice", path, name);
    GRADUS_CHECK(t.defined(), kWhere, "'{}': tensor '{}' is undefined", path, name);
    items.push_back({&name, contiguous_cpu(t), info_of(t.dtype()).rank});
  }
  // The reference implementation's order: widest dtype first, then by name.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.rank != b.rank ? a.rank > b.rank : *a.name < *b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;  // std::map: sorted keys
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (const Item& it : items) {
    uint64_t n = it.data.nbytes();
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = info_of(it.data.dtype()).name;
    e["shape"] = it.data.shape();
    e["data_offsets"] = {offset, offset + n};
    header[*it.name] = std::move(e);
    offset += n;
  }
  std::string text;
  try {
    text = header.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    GRADUS_FAIL(kWhere, "'{}': a tensor name or metadata string is not valid UTF-8 ({})", path,
                e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes

  write_file_atomic(path, [&](std::ostream& out) {
    put_u64_le(out, text.size());
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Item& it : items)
      out.write(static_cast<const char*>(it.data.raw_data()),
                static_cast<std::streamsize>(it.data.nbytes()));
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  constexpr const char* kWhere = "load_safetensors";
  InputFile file(path);
  const uint64_t size = file.size();
  GRADUS_CHECK(size >= 8, kWhere,
               "'{}': file too short ({} bytes): a safetensors file starts with an 8-byte header "
               "length",
               path, size);
  unsigned char len_bytes[8];
  file.read(len_bytes, 0, 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
  GRADUS_CHECK(n <= size - 8, kWhere,
               "'{}': header length {} is larger than the rest of the file ({} bytes after the "
               "8-byte length): truncated or not a safetensors file",
               path, n, size - 8);
  GRADUS_CHECK(n <= kMaxHeaderBytes, kWhere, "'{}': header length {} exceeds the {}-byte limit",
               path, n, kMaxHeaderBytes);

  std::string text(n, '\0');
  file.read(text.data(), 8, n);
  GRADUS_CHECK(!text.empty() && text[0] == '{', kWhere,
               "'{}': header is not a JSON object (it must start with '{{')", path);
  check_json_depth(text, kWhere, fmt::format("'{}': the header", path));

  // Duplicate names would silently shadow each other in the parsed object: catch them here.
  std::string duplicate;
  std::set<std::string> top_keys;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
        !top_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::exception& e) {
    GRADUS_FAIL(kWhere, "'{}': header is not valid JSON: {}", path, e.what());
  }
  GRADUS_CHECK(header.is_object(), kWhere, "'{}': header is a JSON {}, not an object", path,
               header.type_name());
  GRADUS_CHECK(duplicate.empty(), kWhere, "'{}': \"{}\" appears twice in the header", path,
               duplicate);

  SafetensorsFile result;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      const auto& m = it.value();
      GRADUS_CHECK(m.is_object(), kWhere, "'{}': \"__metadata__\" must be an object, found a {}",
                   path, m.type_name());
      for (auto kv = m.begin(); kv != m.end(); ++kv) {
        GRADUS_CHECK(kv.value().is_string(), kWhere,
                     "'{}': \"__metadata__\" must map strings to strings; \"{}\" holds a {}", path,
                     kv.key(), kv.value().type_name());
        result.metadata[kv.key()] = kv.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), it.value()));
  }

  // The tensors must tile the data section: sorted by offset, each begins where the previous ended.
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;
  for (const Entry& e : entries)
    GRADUS_CHECK(e.end <= data_size, kWhere,
                 "'{}': tensor '{}': data_offsets [{}, {}] lie outside the data section ({} "
                 "bytes): truncated file or wrong offsets",
                 path, e.name, e.begin, e.end, data_size);
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : by_offset) {
    GRADUS_CHECK(e->begin >= covered, kWhere,
                 "'{}': tensor '{}': data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", path,
                 e->name, e->begin, e->end, prev ? prev->name : "", prev ? prev->begin : 0,
                 prev ? prev->end : 0);
    GRADUS_CHECK(e->begin == covered, kWhere,
                 "'{}': tensor '{}': bytes [{}, {}) of the data section before it belong to no "
                 "tensor",
                 path, e->name, covered, e->begin);
    covered = e->end;
    prev = e;
  }
  GRADUS_CHECK(covered == data_size, kWhere,
               "'{}': trailing garbage: {} bytes after the last tensor's data (the data section "
               "holds {} bytes, the tensors cover {})",
               path, data_size - covered, data_size, covered);

  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  result.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, kCPU);
    if (e.end > e.begin) file.read(t.raw_data(), data_start + e.begin, e.end - e.begin);
    result.tensors.emplace_back(e.name, std::move(t));
  }
  return result;
}

}  // namespace gradus
