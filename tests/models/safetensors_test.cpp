// safetensors checkpoints and atomic files: round trips of every dtype Gradus holds (bf16 as raw
// bits), non-contiguous inputs, metadata, empty tensors and scalars; the exact bytes of a small
// file built here by hand from the format's description; one test per validation rule on corrupt
// files (each checks that the message names the file, the tensor and the problem) plus exhaustive
// truncation and byte-corruption sweeps that must only ever throw gradus::Error; and atomic
// replacement (a failing writer leaves the previous file and no temporary behind).
#include "models/io/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/random.h"
#include "models/io/atomic_file.h"

namespace gradus {
namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Bytes u64_le(uint64_t v) {
  Bytes b(8, '\0');
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return b;
}

// A file in the format, from a header text (padded with spaces to a multiple of 8 as writers do)
// and the data section.
Bytes make_file(std::string header, const Bytes& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return u64_le(header.size()) + header + data;
}

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           fmt::format("gradus-io-{}-{}-{}", ::getpid(), info->test_suite_name(), info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Everything in the directory (a leftover temporary file would show up here).
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

using Safetensors = IoTest;
using AtomicFile = IoTest;

const Tensor& find(const SafetensorsFile& f, const std::string& name) {
  for (const auto& [n, t] : f.tensors)
    if (n == name) return t;
  throw std::runtime_error("no tensor " + name);
}

// The raw bytes of a contiguous tensor.
Bytes raw_bytes(const Tensor& t) {
  EXPECT_TRUE(t.is_contiguous());
  return Bytes(static_cast<const char*>(t.raw_data()), t.nbytes());
}

// ------------------------------------------------------------------ round trips

TEST_F(Safetensors, RoundTripEveryDtypeBitExact) {
  Generator gen(7);
  Tensor a = rand_normal({3, 4}, gen, DType::f32);
  Tensor b = rand_normal({2, 3, 5}, gen, DType::f64);
  Tensor c = Tensor::from_vector({-3, 0, 1, 9007199254740993.0, -42}, {5}, DType::i64);
  // Values that would not survive a conversion through float: i64 beyond 2^53, f64 subnormals.
  c.data<int64_t>()[3] = (int64_t{1} << 62) + 1;
  b.data<double>()[0] = 4.9e-324;
  save_safetensors(path("m.safetensors"), {{"w", a}, {"v", b}, {"idx", c}});

  SafetensorsFile f = load_safetensors(path("m.safetensors"));
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].first, "idx");  // sorted by name
  EXPECT_EQ(f.tensors[1].first, "v");
  EXPECT_EQ(f.tensors[2].first, "w");
  EXPECT_TRUE(f.metadata.empty());
  for (const auto& [name, orig] :
       std::vector<std::pair<std::string, Tensor>>{{"w", a}, {"v", b}, {"idx", c}}) {
    const Tensor& got = find(f, name);
    EXPECT_EQ(got.dtype(), orig.dtype()) << name;
    EXPECT_EQ(got.shape(), orig.shape()) << name;
    EXPECT_TRUE(got.device().is_cpu()) << name;
    EXPECT_EQ(raw_bytes(got), raw_bytes(orig)) << name;
  }
  EXPECT_EQ(find(f, "idx").data<int64_t>()[3], (int64_t{1} << 62) + 1);
  EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});
}

Tensor bf16_tensor(const Shape& shape, const std::vector<uint16_t>& bits) {
  Tensor t = Tensor::empty(shape, DType::bf16);
  EXPECT_EQ(static_cast<size_t>(t.numel()), bits.size());
  std::memcpy(t.raw_data(), bits.data(), bits.size() * 2);
  return t;
}

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  std::vector<uint16_t> out(static_cast<size_t>(t.numel()));
  std::memcpy(out.data(), t.raw_data(), out.size() * 2);
  return out;
}

TEST_F(Safetensors, Bf16RawBitsRoundTripIncludingNonContiguous) {
  // 1.0, -2.0, +inf, a NaN payload, the smallest subnormal, -0.0
  std::vector<uint16_t> bits{0x3f80, 0xc000, 0x7f80, 0x7fc1, 0x0001, 0x8000};
  Tensor t = bf16_tensor({2, 3}, bits);
  Tensor tt = raw_transpose(t, 0, 1);  // (3, 2), non-contiguous
  save_safetensors(path("b.safetensors"), {{"t", t}, {"tt", tt}});
  SafetensorsFile f = load_safetensors(path("b.safetensors"));
  EXPECT_EQ(find(f, "t").dtype(), DType::bf16);
  EXPECT_EQ(bf16_bits(find(f, "t")), bits);
  EXPECT_EQ(find(f, "tt").shape(), (Shape{3, 2}));
  // Row-major order of the transpose: element (i, j) is t(j, i).
  std::vector<uint16_t> expected;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) expected.push_back(bits[j * 3 + i]);
  EXPECT_EQ(bf16_bits(find(f, "tt")), expected);
  EXPECT_NE(read_bytes(path("b.safetensors")).find("\"dtype\":\"BF16\""), std::string::npos);
}

TEST_F(Safetensors, NonContiguousInputsAreWrittenRowMajor) {
  Generator gen(3);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor base = rand_uniform({4, 6}, gen, dt);
    Tensor transposed = raw_transpose(base, 0, 1);                   // (6, 4)
    Tensor stepped = raw_slice(base, 1, 1, 6, 2);                    // (4, 3), column stride 2
    Tensor expanded = raw_expand(raw_slice(base, 0, 0, 1), {3, 6});  // stride 0 on axis 0
    Tensor offset_view = raw_slice(base, 0, 2, 4);                   // starts mid-storage
    ASSERT_FALSE(transposed.is_contiguous());
    ASSERT_FALSE(stepped.is_contiguous());
    save_safetensors(path("nc.safetensors"), {{"transposed", transposed},
                                              {"stepped", stepped},
                                              {"expanded", expanded},
                                              {"offset", offset_view}});
    SafetensorsFile f = load_safetensors(path("nc.safetensors"));
    for (const auto& [name, orig] :
         std::vector<std::pair<std::string, Tensor>>{{"transposed", transposed},
                                                     {"stepped", stepped},
                                                     {"expanded", expanded},
                                                     {"offset", offset_view}}) {
      const Tensor& got = find(f, name);
      EXPECT_EQ(got.shape(), orig.shape()) << name;
      EXPECT_TRUE(got.is_contiguous()) << name;
      EXPECT_EQ(got.to_vector(), orig.to_vector()) << name << " " << dtype_name(dt);
    }
    // The file holds exactly the logical elements: 24 + 12 + 18 + 12 of them.
    Bytes file = read_bytes(path("nc.safetensors"));
    uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    EXPECT_EQ(file.size() - 8 - n, (24u + 12u + 18u + 12u) * dtype_size(dt));
  }
}

TEST_F(Safetensors, MetadataRoundTrip) {
  std::map<std::string, std::string> meta{{"format", "pt"},
                                          {"step", "1200"},
                                          {"note", "quotes \" backslash \\ newline \n tab \t"},
                                          {"unicode", "Ishmael — π ✓"},
                                          {"empty", ""}};
  save_safetensors(path("meta.safetensors"), {{"x", Tensor::ones({2})}}, meta);
  SafetensorsFile f = load_safetensors(path("meta.safetensors"));
  EXPECT_EQ(f.metadata, meta);
  // Metadata only, no tensors, is a valid file too.
  save_safetensors(path("only.safetensors"), {}, meta);
  SafetensorsFile g = load_safetensors(path("only.safetensors"));
  EXPECT_TRUE(g.tensors.empty());
  EXPECT_EQ(g.metadata, meta);
}

TEST_F(Safetensors, EmptyTensorsAndScalars) {
  Tensor scalar = Tensor::scalar(2.5, DType::f64);
  Tensor empty1 = Tensor::empty({0}, DType::f32);
  Tensor empty3 = Tensor::empty({3, 0, 2}, DType::i64);
  Tensor iscalar = Tensor::scalar(-5, DType::i64);
  save_safetensors(path("e.safetensors"),
                   {{"s", scalar}, {"e1", empty1}, {"e3", empty3}, {"is", iscalar}});
  SafetensorsFile f = load_safetensors(path("e.safetensors"));
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(find(f, "s").shape(), Shape{});
  EXPECT_EQ(find(f, "s").item(), 2.5);
  EXPECT_EQ(find(f, "is").item(), -5);
  EXPECT_EQ(find(f, "e1").shape(), (Shape{0}));
  EXPECT_EQ(find(f, "e1").dtype(), DType::f32);
  EXPECT_EQ(find(f, "e3").shape(), (Shape{3, 0, 2}));
  EXPECT_EQ(find(f, "e3").numel(), 0);
  Bytes file = read_bytes(path("e.safetensors"));
  EXPECT_NE(file.find("\"shape\":[]"), std::string::npos);
  // An empty file (no tensors, no metadata) is the header "{}" padded to 8 bytes.
  save_safetensors(path("none.safetensors"), {});
  EXPECT_EQ(read_bytes(path("none.safetensors")), u64_le(8) + "{}      ");
  EXPECT_TRUE(load_safetensors(path("none.safetensors")).tensors.empty());
}

TEST_F(Safetensors, ByteExactLayout) {
  // From the format description: the header lists "__metadata__" first, then the tensors by
  // descending dtype alignment (I64 before F64 before F32 before BF16), then by name; compact JSON
  // with keys dtype, shape, data_offsets; padded with spaces so the data starts at a multiple of
  // 8; the data little-endian in the header's order.
  Tensor f = Tensor::from_vector({1.0, -2.0}, {2}, DType::f32);
  Tensor i = Tensor::from_vector({7}, {1, 1}, DType::i64);
  Tensor d = Tensor::scalar(0.5, DType::f64);
  Tensor h = bf16_tensor({1}, {0x3f80});
  save_safetensors(path("tiny.safetensors"), {{"a_f32", f}, {"b_bf16", h}, {"c_f64", d}, {"z", i}},
                   {{"format", "pt"}, {"by", "gradus"}});

  std::string header = R"({"__metadata__":{"by":"gradus","format":"pt"},)"
                       R"("z":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},)"
                       R"("c_f64":{"dtype":"F64","shape":[],"data_offsets":[8,16]},)"
                       R"("a_f32":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
                       R"("b_bf16":{"dtype":"BF16","shape":[1],"data_offsets":[24,26]}})";
  ASSERT_EQ(header.size(), 278u);  // -> 2 spaces of padding, 280 bytes
  // clang-format off
  const unsigned char data[] = {
      7, 0, 0, 0, 0, 0, 0, 0,           // i64 7
      0, 0, 0, 0, 0, 0, 0xe0, 0x3f,     // f64 0.5 = 0x3fe0000000000000
      0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0,  // f32 1.0 = 0x3f800000, -2.0 = 0xc0000000
      0x80, 0x3f};                      // bf16 1.0 = 0x3f80
  // clang-format on
  Bytes expected = u64_le(280) + header + "  " + Bytes(reinterpret_cast<const char*>(data), 26);
  Bytes got = read_bytes(path("tiny.safetensors"));
  EXPECT_EQ(got, expected);

  // The reference implementation's documented examples: a header of exactly 64 bytes needs no
  // padding; metadata alone.
  Tensor attn = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {1, 2, 3}, DType::f32);
  save_safetensors(path("attn.safetensors"), {{"attn.0", attn}});
  std::string attn_header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  ASSERT_EQ(attn_header.size(), 64u);
  EXPECT_EQ(read_bytes(path("attn.safetensors")), u64_le(64) + attn_header + raw_bytes(attn));
  save_safetensors(path("fw.safetensors"), {}, {{"framework", "pt"}});
  EXPECT_EQ(read_bytes(path("fw.safetensors")),
            u64_le(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");

  // And the reader accepts the hand-built bytes.
  write_bytes(path("hand.safetensors"), expected);
  SafetensorsFile back = load_safetensors(path("hand.safetensors"));
  EXPECT_EQ(find(back, "a_f32").to_vector(), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(find(back, "z").to_vector(), (std::vector<double>{7}));
  EXPECT_EQ(find(back, "c_f64").item(), 0.5);
  EXPECT_EQ(bf16_bits(find(back, "b_bf16")), (std::vector<uint16_t>{0x3f80}));
}

TEST_F(Safetensors, ReadsEntriesInAnyOrder) {
  // Other writers order entries by name or arbitrarily; offsets decide where the data is.
  std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("a":{"data_offsets":[4,12],"shape":[1],"dtype":"F64"}})";
  Bytes data(12, '\0');
  float fb = 3.0f;
  double da = -1.25;
  std::memcpy(data.data(), &fb, 4);
  std::memcpy(data.data() + 4, &da, 8);
  write_bytes(path("order.safetensors"), make_file(header, data));
  SafetensorsFile f = load_safetensors(path("order.safetensors"));
  EXPECT_EQ(find(f, "b").item(), 3.0);
  EXPECT_EQ(find(f, "a").item(), -1.25);
}

TEST_F(Safetensors, SaveErrorsNameFileAndTensor) {
  std::string p = path("bad.safetensors");
  Tensor x = Tensor::ones({2});
  std::string dup = error_of([&] { save_safetensors(p, {{"w", x}, {"w", x}}); });
  EXPECT_NE(dup.find(p), std::string::npos) << dup;
  EXPECT_NE(dup.find("'w' appears twice"), std::string::npos) << dup;
  std::string reserved = error_of([&] { save_safetensors(p, {{"__metadata__", x}}); });
  EXPECT_NE(reserved.find("reserved"), std::string::npos) << reserved;
  std::string undefined = error_of([&] { save_safetensors(p, {{"u", Tensor()}}); });
  EXPECT_NE(undefined.find("'u' is undefined"), std::string::npos) << undefined;
  std::string utf8 = error_of([&] { save_safetensors(p, {{"bad\xff", x}}); });
  EXPECT_NE(utf8.find("not valid UTF-8"), std::string::npos) << utf8;
  std::string nodir = error_of([&] { save_safetensors(path("no/such/dir/x.safetensors"), {}); });
  EXPECT_NE(nodir.find("no/such/dir/x.safetensors"), std::string::npos) << nodir;
  EXPECT_NE(nodir.find(std::strerror(ENOENT)), std::string::npos) << nodir;
  EXPECT_TRUE(listing().empty());  // nothing was written, nothing left behind
}

// ------------------------------------------------------------------ corrupt files

class CorruptSafetensors : public IoTest {
 protected:
  // Writes `bytes` and returns the loader's error message (which must name the file).
  std::string load_error(const Bytes& bytes) {
    std::string p = path("c.safetensors");
    write_bytes(p, bytes);
    std::string msg = error_of([&] { load_safetensors(p); });
    EXPECT_NE(msg.find(p), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  }
  static Bytes f32_data(size_t n) { return Bytes(4 * n, '\x01'); }
};

#define EXPECT_HAS(msg, text) EXPECT_NE((msg).find(text), std::string::npos) << (msg)

TEST_F(CorruptSafetensors, MissingFile) {
  std::string p = path("absent.safetensors");
  std::string msg = error_of([&] { load_safetensors(p); });
  EXPECT_HAS(msg, p);
  EXPECT_HAS(msg, std::strerror(ENOENT));
}

TEST_F(CorruptSafetensors, FileTooShort) {
  for (size_t n : {0, 1, 7}) {
    std::string msg = load_error(Bytes(n, '\0'));
    EXPECT_HAS(msg, "file too short");
    EXPECT_HAS(msg, fmt::format("({} bytes)", n));
  }
}

TEST_F(CorruptSafetensors, Truncated) {
  Tensor x = Tensor::arange(10);
  save_safetensors(path("ok.safetensors"), {{"weights", x}});
  Bytes good = read_bytes(path("ok.safetensors"));
  // Cut into the data: the tensor's offsets now lie beyond the data section.
  std::string msg = load_error(good.substr(0, good.size() - 4));
  EXPECT_HAS(msg, "tensor 'weights'");
  EXPECT_HAS(msg, "outside the data section");
  // Cut into the header: the header length is larger than what is left.
  msg = load_error(good.substr(0, 20));
  EXPECT_HAS(msg, "header length");
  EXPECT_HAS(msg, "larger than the rest of the file");
}

TEST_F(CorruptSafetensors, HeaderLengthFlipped) {
  save_safetensors(path("ok.safetensors"), {{"w", Tensor::ones({3})}});
  Bytes good = read_bytes(path("ok.safetensors"));
  for (int byte : {7, 4, 0}) {
    Bytes bad = good;
    bad[byte] = static_cast<char>(bad[byte] ^ 0x80);
    std::string msg = load_error(bad);
    EXPECT_HAS(msg, "header length");
  }
  // A length that fits in the file but stops mid-header: not JSON any more.
  Bytes shorter = good;
  shorter[0] = static_cast<char>(good[0] - 8);
  EXPECT_HAS(load_error(shorter), "not valid JSON");
}

TEST_F(CorruptSafetensors, HeaderNotJson) {
  EXPECT_HAS(load_error(make_file("{not json}", "")), "header is not valid JSON");
  EXPECT_HAS(load_error(make_file(R"({"w":{"dtype":"F32",)", "")), "header is not valid JSON");
  EXPECT_HAS(load_error(make_file("[1, 2]", "")), "header is not a JSON object");
  EXPECT_HAS(load_error(make_file("", "")), "header is not a JSON object");
  EXPECT_HAS(load_error(make_file("{\"w\xff\":1}", "")), "not valid JSON");  // invalid UTF-8
  EXPECT_HAS(load_error(make_file(R"({"a": 1} extra)", "")), "not valid JSON");
}

TEST_F(CorruptSafetensors, EntryMissingFields) {
  struct Case {
    const char* header;
    const char* problem;
  };
  for (const Case& c : {
           Case{R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "missing \"dtype\""},
           Case{R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "missing \"shape\""},
           Case{R"({"w":{"dtype":"F32","shape":[1]}})", "missing \"data_offsets\""},
           Case{R"({"w":[1,2]})", "expected an object"},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})",
                "unexpected key \"x\""},
           Case{R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", "must be a string"},
           Case{R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", "must be an array"},
           Case{R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                "not a non-negative integer"},
           Case{R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
                "not a non-negative integer"},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "must be [begin, end]"},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                "non-negative integers"},
           Case{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
                "end before they begin"},
       }) {
    std::string msg = load_error(make_file(c.header, f32_data(1)));
    EXPECT_HAS(msg, "tensor 'w'");
    EXPECT_HAS(msg, c.problem);
  }
}

TEST_F(CorruptSafetensors, UnknownDtype) {
  for (const char* dt : {"F16", "I32", "U8", "BOOL", "float32", ""}) {
    std::string msg = load_error(make_file(
        fmt::format(R"({{"layer.0":{{"dtype":"{}","shape":[2],"data_offsets":[0,4]}}}})", dt),
        Bytes(4, '\0')));
    EXPECT_HAS(msg, "tensor 'layer.0'");
    EXPECT_HAS(msg, fmt::format("unsupported dtype \"{}\"", dt));
  }
}

TEST_F(CorruptSafetensors, OffsetsNotMatchingShape) {
  std::string msg = load_error(
      make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32_data(2)));
  EXPECT_HAS(msg, "tensor 'w'");
  EXPECT_HAS(msg, "span 8 bytes but shape (3,) of F32 needs 12");
  // A shape whose byte count overflows 64 bits must be reported, not wrapped around.
  msg = load_error(make_file(
      R"({"w":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", ""));
  EXPECT_HAS(msg, "too large");
}

TEST_F(CorruptSafetensors, OffsetsOutOfRange) {
  std::string msg = load_error(
      make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", f32_data(2)));
  EXPECT_HAS(msg, "tensor 'w'");
  EXPECT_HAS(msg, "outside the data section (8 bytes)");
  msg = load_error(make_file(
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}})",
      f32_data(1)));
  EXPECT_HAS(msg, "tensor 'w'");
}

TEST_F(CorruptSafetensors, OverlappingOffsets) {
  std::string msg =
      load_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           f32_data(3)));
  EXPECT_HAS(msg, "tensor 'b'");
  EXPECT_HAS(msg, "overlap tensor 'a'");
  // Two names on the same bytes.
  msg = load_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                             f32_data(1)));
  EXPECT_HAS(msg, "overlap tensor");
}

TEST_F(CorruptSafetensors, GapBetweenTensors) {
  std::string msg =
      load_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                           f32_data(3)));
  EXPECT_HAS(msg, "tensor 'b'");
  EXPECT_HAS(msg, "bytes [4, 8) of the data section before it belong to no tensor");
}

TEST_F(CorruptSafetensors, TrailingGarbage) {
  save_safetensors(path("ok.safetensors"), {{"w", Tensor::ones({3})}});
  std::string msg = load_error(read_bytes(path("ok.safetensors")) + "garbage");
  EXPECT_HAS(msg, "trailing garbage: 7 bytes after the last tensor");
}

TEST_F(CorruptSafetensors, DuplicateNamesAndBadMetadata) {
  std::string msg = load_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                         R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                         f32_data(2)));
  EXPECT_HAS(msg, "\"w\" appears twice");
  msg = load_error(make_file(R"({"__metadata__":{"step":12}})", ""));
  EXPECT_HAS(msg, "\"step\" holds a number");
  msg = load_error(make_file(R"({"__metadata__":"pt"})", ""));
  EXPECT_HAS(msg, "\"__metadata__\" must be an object");
}

// Every truncation and many single-byte corruptions of a valid file either load or throw
// gradus::Error: no crash, no other exception, no huge allocation.
TEST_F(CorruptSafetensors, SweepNeverCrashes) {
  Generator gen(11);
  save_safetensors(path("ok.safetensors"),
                   {{"a", rand_normal({3, 2}, gen)},
                    {"b", Tensor::arange(4, DType::i64)},
                    {"c", Tensor::scalar(1.0, DType::f64)}},
                   {{"k", "v"}});
  const Bytes good = read_bytes(path("ok.safetensors"));
  // Returns whether the bytes loaded; anything thrown other than gradus::Error fails the test.
  auto loads = [&](const Bytes& bytes) {
    write_bytes(path("c.safetensors"), bytes);
    try {
      load_safetensors(path("c.safetensors"));
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(loads(good.substr(0, n))) << "truncated to " << n << " bytes";
  const char replacements[] = {'\0', '\xff', '"', '}', '9', '-'};
  int rejected = 0;
  uint64_t header_end = 0;
  std::memcpy(&header_end, good.data(), 8);
  header_end += 8;
  for (size_t i = 0; i < header_end; ++i)
    for (char r : replacements) {
      if (good[i] == r) continue;
      Bytes bad = good;
      bad[i] = r;
      rejected += loads(bad) ? 0 : 1;
    }
  EXPECT_GT(rejected, 0);
  EXPECT_TRUE(loads(good));
}

// ------------------------------------------------------------------ atomic files

TEST_F(AtomicFile, WritesAndReplaces) {
  std::string p = path("summary.json");
  write_text_atomic(p, "first");
  EXPECT_EQ(read_bytes(p), "first");
  write_text_atomic(p, "second, longer contents");
  EXPECT_EQ(read_bytes(p), "second, longer contents");
  write_file_atomic(p, [](std::ostream& out) {
    for (int i = 0; i < 100000; ++i) out << i << '\n';  // crosses the write buffer many times
  });
  Bytes got = read_bytes(p);
  EXPECT_EQ(got.substr(0, 4), "0\n1\n");
  EXPECT_EQ(got.substr(got.size() - 6), "99999\n");
  EXPECT_EQ(listing(), std::vector<std::string>{"summary.json"});
  // Default permissions of a new file (0666 less the umask), not the 0600 of a mkstemp file.
  mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask);
}

TEST_F(AtomicFile, ThrowingWriterLeavesOldFileAndNoTemporary) {
  std::string p = path("metrics.jsonl");
  write_text_atomic(p, "old contents\n");
  struct WriterFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  // Throws after writing more than the stream buffer, so part of the new file reached the disk.
  EXPECT_THROW(write_file_atomic(p,
                                 [](std::ostream& out) {
                                   out << std::string(200000, 'x');
                                   throw WriterFailed("midway");
                                 }),
               WriterFailed);
  EXPECT_EQ(read_bytes(p), "old contents\n");
  EXPECT_EQ(listing(), std::vector<std::string>{"metrics.jsonl"});

  // Same for a checkpoint: a failing save leaves the previous checkpoint loadable.
  std::string ck = path("model.safetensors");
  save_safetensors(ck, {{"w", Tensor::full({2}, 3.0)}});
  EXPECT_THROW(save_safetensors(ck, {{"w", Tensor::ones({2})}, {"w", Tensor::ones({2})}}), Error);
  EXPECT_EQ(load_safetensors(ck).tensors[0].second.to_vector(), (std::vector<double>{3, 3}));
  EXPECT_EQ(listing(), (std::vector<std::string>{"metrics.jsonl", "model.safetensors"}));
}

TEST_F(AtomicFile, FailedStreamIsAnError) {
  std::string p = path("out.txt");
  write_text_atomic(p, "kept");
  std::string msg = error_of([&] {
    write_file_atomic(p, [](std::ostream& out) {
      out << "partial";
      out.setstate(std::ios::badbit);
    });
  });
  EXPECT_HAS(msg, p);
  EXPECT_HAS(msg, "failed state");
  EXPECT_EQ(read_bytes(p), "kept");
  EXPECT_EQ(listing(), std::vector<std::string>{"out.txt"});
}

TEST_F(AtomicFile, ErrorsNamePathAndReason) {
  std::string missing_dir = path("absent/out.txt");
  std::string msg = error_of([&] { write_text_atomic(missing_dir, "x"); });
  EXPECT_HAS(msg, missing_dir);
  EXPECT_HAS(msg, std::strerror(ENOENT));
  // The destination is a directory: the rename fails and the temporary file is removed.
  fs::create_directories(dir_ / "sub");
  msg = error_of([&] { write_text_atomic(path("sub"), "x"); });
  EXPECT_HAS(msg, path("sub"));
  EXPECT_HAS(msg, std::strerror(EISDIR));
  EXPECT_EQ(listing(), std::vector<std::string>{"sub"});
  EXPECT_TRUE(fs::is_empty(dir_ / "sub"));
}

}  // namespace
}  // namespace gradus
