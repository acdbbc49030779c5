#include "models/hardmax/model.h"

#include <cmath>

#include "core/error.h"
#include "core/tensor.h"
#include "models/io/safetensors.h"

namespace gradus::hardmax {

const char* scores_name(Scores s) {
  switch (s) {
    case Scores::none: return "none";
    case Scores::rank1: return "rank1";
    case Scores::general: return "general";
  }
  return "?";
}

const char* role_name(BlockRole r) {
  switch (r) {
    case BlockRole::other: return "other";
    case BlockRole::shift: return "shift";
    case BlockRole::split: return "split";
    case BlockRole::collapse: return "collapse";
    case BlockRole::label: return "label";
  }
  return "?";
}

int64_t Net::num_parameters() const {
  int64_t p = 0;
  for (const Block& b : blocks) p += b.ff.num_parameters(d) + b.sa.num_parameters(d);
  return p;
}

namespace {

bool exact_in(double v, DType dtype) {
  return dtype == DType::f64 || static_cast<double>(static_cast<float>(v)) == v;
}

void check_values(const std::vector<double>& v, size_t expected, DType dtype,
                  const std::string& where) {
  GRADUS_CHECK(v.size() == expected, where, "expected {} values, found {}", expected, v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    GRADUS_CHECK(std::isfinite(v[i]), where, "value {} is not finite ({})", i, v[i]);
    GRADUS_CHECK(exact_in(v[i], dtype), where, "value {} ({}) is not exact in {}", i, v[i],
                 dtype_name(dtype));
  }
}

void round_vec(std::vector<double>& v, DType dtype) {
  if (dtype == DType::f32)
    for (double& x : v) x = static_cast<double>(static_cast<float>(x));
}

}  // namespace

void Net::validate() const {
  GRADUS_CHECK(d >= 1, "hardmax net", "expected d >= 1, found {}", d);
  GRADUS_CHECK(dtype == DType::f64 || dtype == DType::f32, "hardmax net",
               "expected dtype f64 or f32, found {}", dtype_name(dtype));
  const size_t ud = static_cast<size_t>(d);
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block& b = blocks[i];
    const std::string at = fmt::format("hardmax net: block {}", i);
    GRADUS_CHECK(b.ff.width >= 0, at, "ff width {} is negative", b.ff.width);
    const size_t w = static_cast<size_t>(b.ff.width);
    check_values(b.ff.in_weight, w * ud, dtype, at + " ff.in_weight");
    check_values(b.ff.in_bias, w, dtype, at + " ff.in_bias");
    check_values(b.ff.out_weight, w * ud, dtype, at + " ff.out_weight");
    check_values({b.sa.alpha}, 1, dtype, at + " sa.alpha");
    GRADUS_CHECK(b.sa.alpha >= 0 && b.sa.alpha <= 1, at, "sa.alpha must lie in [0, 1], found {}",
                 b.sa.alpha);
    check_values(b.sa.q, b.sa.scores == Scores::rank1 ? ud : 0, dtype, at + " sa.q");
    check_values(b.sa.k, b.sa.scores == Scores::rank1 ? ud : 0, dtype, at + " sa.k");
    check_values(b.sa.matrix, b.sa.scores == Scores::general ? ud * ud : 0, dtype,
                 at + " sa.matrix");
  }
  check_values(readout, ud, dtype, "hardmax net: readout.e");
}

void Net::round_to(DType to) {
  GRADUS_CHECK(to == DType::f64 || to == DType::f32, "hardmax net",
               "expected dtype f64 or f32, found {}", dtype_name(to));
  dtype = to;
  for (Block& b : blocks) {
    round_vec(b.ff.in_weight, to);
    round_vec(b.ff.in_bias, to);
    round_vec(b.ff.out_weight, to);
    round_vec(b.sa.q, to);
    round_vec(b.sa.k, to);
    round_vec(b.sa.matrix, to);
    if (to == DType::f32) b.sa.alpha = static_cast<float>(b.sa.alpha);
  }
  round_vec(readout, to);
}

void save_net(const Net& net, const std::string& path) {
  net.validate();
  const int64_t d = net.d, L = net.num_blocks();
  std::vector<double> offsets{0}, in_w, in_b, out_w, scores, alpha, q, k, matrix, matrix_index,
      role;
  int64_t general = 0;
  for (const Block& b : net.blocks) {
    offsets.push_back(offsets.back() + static_cast<double>(b.ff.width));
    in_w.insert(in_w.end(), b.ff.in_weight.begin(), b.ff.in_weight.end());
    in_b.insert(in_b.end(), b.ff.in_bias.begin(), b.ff.in_bias.end());
    out_w.insert(out_w.end(), b.ff.out_weight.begin(), b.ff.out_weight.end());
    scores.push_back(static_cast<double>(b.sa.scores));
    alpha.push_back(b.sa.alpha);
    for (int64_t c = 0; c < d; ++c) {
      q.push_back(b.sa.scores == Scores::rank1 ? b.sa.q[c] : 0.0);
      k.push_back(b.sa.scores == Scores::rank1 ? b.sa.k[c] : 0.0);
    }
    if (b.sa.scores == Scores::general) {
      matrix.insert(matrix.end(), b.sa.matrix.begin(), b.sa.matrix.end());
      matrix_index.push_back(static_cast<double>(general++));
    } else {
      matrix_index.push_back(-1);
    }
    role.push_back(static_cast<double>(b.role));
  }
  const int64_t U = static_cast<int64_t>(offsets.back());
  const DType t = net.dtype;
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"ff.offsets", Tensor::from_vector(offsets, {L + 1}, DType::i64)},
      {"ff.in_weight", Tensor::from_vector(in_w, {U, d}, t)},
      {"ff.in_bias", Tensor::from_vector(in_b, {U}, t)},
      {"ff.out_weight", Tensor::from_vector(out_w, {U, d}, t)},
      {"sa.scores", Tensor::from_vector(scores, {L}, DType::i64)},
      {"sa.alpha", Tensor::from_vector(alpha, {L}, t)},
      {"sa.q", Tensor::from_vector(q, {L, d}, t)},
      {"sa.k", Tensor::from_vector(k, {L, d}, t)},
      {"sa.matrix_index", Tensor::from_vector(matrix_index, {L}, DType::i64)},
      {"block.role", Tensor::from_vector(role, {L}, DType::i64)},
      {"readout.e", Tensor::from_vector(net.readout, {d}, t)},
  };
  if (general > 0)
    tensors.push_back({"sa.matrix", Tensor::from_vector(matrix, {general, d, d}, t)});
  std::map<std::string, std::string> meta = net.info;
  meta["format"] = "gradus-hardmax";
  meta["version"] = "1";
  meta["d"] = std::to_string(d);
  meta["dtype"] = std::string(dtype_name(t));
  meta["blocks"] = std::to_string(L);
  meta["parameters"] = std::to_string(net.num_parameters());
  save_safetensors(path, tensors, meta);
}

Net load_net(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  auto meta = [&](const std::string& key) {
    auto it = f.metadata.find(key);
    GRADUS_CHECK(it != f.metadata.end(), path,
                 "not a hardmax model: metadata key \"{}\" is missing (write models with "
                 "gradus build-hardmax)",
                 key);
    return it->second;
  };
  GRADUS_CHECK(meta("format") == "gradus-hardmax", path,
               "not a hardmax model: metadata format is \"{}\", expected \"gradus-hardmax\"",
               meta("format"));
  GRADUS_CHECK(meta("version") == "1", path,
               "unsupported hardmax model version \"{}\" (expected 1)", meta("version"));
  Net net;
  net.dtype = parse_dtype(meta("dtype"));
  GRADUS_CHECK(net.dtype == DType::f64 || net.dtype == DType::f32, path,
               "dtype must be f64 or f32, found {}", meta("dtype"));
  auto tensor = [&](const std::string& name, bool required = true) -> Tensor {
    for (auto& [n, t] : f.tensors)
      if (n == name) return t;
    GRADUS_CHECK(!required, path, "tensor \"{}\" is missing", name);
    return Tensor();
  };
  auto expect = [&](const std::string& name, const Shape& shape, DType dtype) {
    Tensor t = tensor(name);
    GRADUS_CHECK(t.shape() == shape && t.dtype() == dtype, path,
                 "tensor \"{}\": expected {} {}, found {}", name, dtype_name(dtype),
                 fmt::format("({})", fmt::join(shape, ", ")), t.describe());
    return t.to_vector();
  };
  Tensor e = tensor("readout.e");
  GRADUS_CHECK(e.dim() == 1 && e.size(0) >= 1, path, "tensor \"readout.e\": expected (d), found {}",
               e.describe());
  net.d = e.size(0);
  GRADUS_CHECK(std::to_string(net.d) == meta("d"), path, "metadata d = {} but readout.e has {}",
               meta("d"), net.d);
  const int64_t d = net.d;
  Tensor off_t = tensor("ff.offsets");
  GRADUS_CHECK(off_t.dim() == 1 && off_t.size(0) >= 1 && off_t.dtype() == DType::i64, path,
               "tensor \"ff.offsets\": expected i64 (L + 1), found {}", off_t.describe());
  const int64_t L = off_t.size(0) - 1;
  const auto offsets = off_t.to_vector();
  GRADUS_CHECK(offsets[0] == 0, path, "ff.offsets must start at 0, found {}", offsets[0]);
  for (int64_t b = 0; b < L; ++b)
    GRADUS_CHECK(offsets[b + 1] >= offsets[b], path, "ff.offsets decreases at block {}", b);
  const int64_t U = static_cast<int64_t>(offsets[L]);
  const auto in_w = expect("ff.in_weight", {U, d}, net.dtype);
  const auto in_b = expect("ff.in_bias", {U}, net.dtype);
  const auto out_w = expect("ff.out_weight", {U, d}, net.dtype);
  const auto scores = expect("sa.scores", {L}, DType::i64);
  const auto alpha = expect("sa.alpha", {L}, net.dtype);
  const auto q = expect("sa.q", {L, d}, net.dtype);
  const auto k = expect("sa.k", {L, d}, net.dtype);
  const auto matrix_index = expect("sa.matrix_index", {L}, DType::i64);
  const auto role = expect("block.role", {L}, DType::i64);
  std::vector<double> matrix;
  int64_t G = 0;
  if (Tensor m = tensor("sa.matrix", false); m.defined()) {
    GRADUS_CHECK(m.dim() == 3 && m.size(1) == d && m.size(2) == d && m.dtype() == net.dtype, path,
                 "tensor \"sa.matrix\": expected {} (G, {}, {}), found {}", dtype_name(net.dtype),
                 d, d, m.describe());
    G = m.size(0);
    matrix = m.to_vector();
  }
  net.readout = e.to_vector();
  net.blocks.resize(static_cast<size_t>(L));
  for (int64_t b = 0; b < L; ++b) {
    Block& blk = net.blocks[b];
    const int64_t u0 = static_cast<int64_t>(offsets[b]), u1 = static_cast<int64_t>(offsets[b + 1]);
    blk.ff.width = u1 - u0;
    blk.ff.in_weight.assign(in_w.begin() + u0 * d, in_w.begin() + u1 * d);
    blk.ff.in_bias.assign(in_b.begin() + u0, in_b.begin() + u1);
    blk.ff.out_weight.assign(out_w.begin() + u0 * d, out_w.begin() + u1 * d);
    const int64_t s = static_cast<int64_t>(scores[b]);
    GRADUS_CHECK(s >= 0 && s <= 2, path, "sa.scores[{}] = {} (expected 0, 1 or 2)", b, s);
    blk.sa.scores = static_cast<Scores>(s);
    blk.sa.alpha = alpha[b];
    if (blk.sa.scores == Scores::rank1) {
      blk.sa.q.assign(q.begin() + b * d, q.begin() + (b + 1) * d);
      blk.sa.k.assign(k.begin() + b * d, k.begin() + (b + 1) * d);
    }
    const int64_t mi = static_cast<int64_t>(matrix_index[b]);
    if (blk.sa.scores == Scores::general) {
      GRADUS_CHECK(mi >= 0 && mi < G, path, "sa.matrix_index[{}] = {} (expected 0..{})", b, mi,
                   G - 1);
      blk.sa.matrix.assign(matrix.begin() + mi * d * d, matrix.begin() + (mi + 1) * d * d);
    }
    const int64_t r = static_cast<int64_t>(role[b]);
    GRADUS_CHECK(r >= 0 && r <= 4, path, "block.role[{}] = {} (expected 0..4)", b, r);
    blk.role = static_cast<BlockRole>(r);
  }
  for (const auto& [key, value] : f.metadata)
    if (key != "format" && key != "version" && key != "d" && key != "dtype" && key != "blocks" &&
        key != "parameters")
      net.info[key] = value;
  try {
    net.validate();
  } catch (const Error& err) {
    GRADUS_FAIL(path, "{}", err.what());
  }
  return net;
}

}  // namespace gradus::hardmax
