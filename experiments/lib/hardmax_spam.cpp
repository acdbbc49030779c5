// `gradus hardmax-spam`: the hardmax construction on real text (SpamAssassin spam vs ham), next to
// a small softmax transformer trained with the engine on the same sequences (docs/hardmax.md).
//
// Data: scripts/fetch-data spam (data/spam_assassin/, or $GRADUS_DATA_DIR/spam_assassin/). Each
// e-mail becomes the set of its first `--max-words` distinct words (subject and body, see
// models/hardmax/text.h), each word a fixed hashed Gaussian point in R^d; label 1 = spam, 0 = ham.
// Messages with no word, and later messages whose word set equals an earlier one's with the other
// label, are dropped (the construction's precondition). A seeded shuffle splits train/held-out.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/error.h"
#include "core/random.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/hardmax_args.h"
#include "experiments/lib/run_dir.h"
#include "kernels/backend_info.h"
#include "models/hardmax/builder.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/random.h"
#include "models/hardmax/text.h"
#include "models/optim/adam.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using namespace gradus::hardmax;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string spam_dir() {
  const char* env = std::getenv("GRADUS_DATA_DIR");
  fs::path dir;
  if (env && *env) {
    dir = fs::path(env) / "spam_assassin";
  } else {
    const std::string root = find_project_root();
    GRADUS_CHECK(!root.empty(), "hardmax-spam",
                 "the Gradus source tree (with data/ and scripts/) was not found from the current "
                 "directory or the executable; run from inside it or set GRADUS_DATA_DIR");
    dir = fs::path(root) / "data" / "spam_assassin";
  }
  std::error_code ec;
  GRADUS_CHECK(fs::is_regular_file(dir / "index.tsv", ec), "hardmax-spam",
               "the SpamAssassin corpus has not been fetched: run scripts/fetch-data spam (it "
               "writes {})",
               dir.string());
  return dir.string();
}

struct Corpus {
  std::vector<std::vector<std::string>> words;
  std::vector<int64_t> labels;
  int64_t read = 0, empty = 0, conflicting = 0;
};

Corpus read_corpus(const std::string& dir, int64_t max_words, int64_t limit, uint64_t seed) {
  std::ifstream index(fs::path(dir) / "index.tsv");
  std::string line;
  std::getline(index, line);  // header
  std::vector<std::pair<std::string, int64_t>> rows;
  while (std::getline(index, line)) {
    std::istringstream ss(line);
    std::string path, group, label;
    std::getline(ss, path, '\t');
    std::getline(ss, group, '\t');
    std::getline(ss, label, '\t');
    GRADUS_CHECK(label == "spam" || label == "ham", dir + "/index.tsv",
                 "expected label spam or ham, found \"{}\"", label);
    rows.push_back({path, label == "spam" ? 1 : 0});
  }
  // A seeded shuffle: the order decides the split and which of two conflicting messages stays.
  Rng rng(seed * 31 + 5);
  for (int64_t i = static_cast<int64_t>(rows.size()) - 1; i > 0; --i)
    std::swap(rows[i], rows[rng.below(i + 1)]);
  if (limit > 0 && limit < static_cast<int64_t>(rows.size())) rows.resize(limit);
  Corpus c;
  std::map<std::vector<std::string>, int64_t> seen;
  for (const auto& [path, label] : rows) {
    std::ifstream f(fs::path(dir) / path, std::ios::binary);
    GRADUS_CHECK(f.good(), "hardmax-spam", "cannot read {}", (fs::path(dir) / path).string());
    std::stringstream buf;
    buf << f.rdbuf();
    ++c.read;
    std::vector<std::string> w = email_words(buf.str(), max_words);
    if (w.empty()) {
      ++c.empty;
      continue;
    }
    std::vector<std::string> key = w;
    std::sort(key.begin(), key.end());
    auto [it, inserted] = seen.emplace(key, label);
    if (!inserted && it->second != label) {
      ++c.conflicting;
      continue;
    }
    c.words.push_back(std::move(w));
    c.labels.push_back(label);
  }
  return c;
}

Dataset to_dataset(const Corpus& c, const std::vector<int64_t>& idx, int64_t d,
                   const std::string& name) {
  Dataset data;
  data.d = d;
  data.source = name;
  std::map<std::string, std::vector<double>> cache;
  for (int64_t i : idx) {
    std::vector<double> x;
    for (const std::string& w : c.words[i]) {
      auto it = cache.find(w);
      if (it == cache.end()) it = cache.emplace(w, embed_word(w, d)).first;
      x.insert(x.end(), it->second.begin(), it->second.end());
    }
    data.add(x, c.labels[i]);
  }
  return data;
}

// ---- the softmax transformer classifier ----
// tokens (B, T, d) -> linear to C -> L pre-norm blocks [softmax self-attention (H heads, padding
// keys masked) + GELU MLP (4C)] -> layer norm -> mean over the valid tokens -> linear to 2 logits.
struct SoftmaxClassifier {
  int64_t d, C, H, layers;
  std::vector<Tensor> params;
  Tensor w_in, b_in, w_out, b_out, gf, bf;
  struct Layer {
    Tensor g1, b1, wq, wk, wv, wo, g2, b2, w1, c1, w2, c2;
  };
  std::vector<Layer> ls;

  Tensor param(Tensor t) {
    t.set_requires_grad(true);
    params.push_back(t);
    return t;
  }
  Tensor lin(Generator& gen, int64_t out, int64_t in) {
    const double b = 1.0 / std::sqrt(static_cast<double>(in));
    return param(rand_uniform({out, in}, gen, DType::f32, -b, b));
  }
  Tensor vec(int64_t n, double v) { return param(Tensor::full({n}, v, DType::f32)); }

  SoftmaxClassifier(int64_t d_, int64_t C_, int64_t H_, int64_t L_, uint64_t seed)
      : d(d_), C(C_), H(H_), layers(L_) {
    Generator gen(seed);
    w_in = lin(gen, C, d);
    b_in = vec(C, 0);
    for (int64_t l = 0; l < layers; ++l) {
      Layer y;
      y.g1 = vec(C, 1);
      y.b1 = vec(C, 0);
      y.wq = lin(gen, C, C);
      y.wk = lin(gen, C, C);
      y.wv = lin(gen, C, C);
      y.wo = lin(gen, C, C);
      y.g2 = vec(C, 1);
      y.b2 = vec(C, 0);
      y.w1 = lin(gen, 4 * C, C);
      y.c1 = vec(4 * C, 0);
      y.w2 = lin(gen, C, 4 * C);
      y.c2 = vec(C, 0);
      ls.push_back(y);
    }
    gf = vec(C, 1);
    bf = vec(C, 0);
    w_out = lin(gen, 2, C);
    b_out = vec(2, 0);
  }
  int64_t num_parameters() const {
    int64_t n = 0;
    for (const Tensor& p : params) n += p.numel();
    return n;
  }
  // x: (B, T, d), pad: (B, 1, 1, T) 1 at padding keys, valid: (B, T, 1) 1 at tokens -> (B, 2)
  Tensor logits(const Tensor& x, const Tensor& pad, const Tensor& valid,
                const Tensor& count) const {
    const int64_t B = x.size(0), T = x.size(1), Dh = C / H;
    Tensor h = linear(x, w_in, b_in);
    auto heads = [&](const Tensor& t) { return transpose(reshape(t, {B, T, H, Dh}), 1, 2); };
    for (const Layer& y : ls) {
      Tensor a = layer_norm(h, y.g1, y.b1);
      Tensor q = heads(linear(a, y.wq) * (1.0 / std::sqrt(static_cast<double>(Dh))));
      Tensor k = heads(linear(a, y.wk)), v = heads(linear(a, y.wv));
      Tensor p = softmax(masked_fill(matmul(q, transpose(k, 2, 3)), pad, -INFINITY), -1);
      Tensor o = reshape(transpose(matmul(p, v), 1, 2), {B, T, C});
      h = h + linear(o, y.wo);
      Tensor m = layer_norm(h, y.g2, y.b2);
      h = h + linear(gelu(linear(m, y.w1, y.c1)), y.w2, y.c2);
    }
    Tensor pooled = sum(layer_norm(h, gf, bf) * valid, {1}) / count;  // (B, C)
    return linear(pooled, w_out, b_out);
  }
};

struct Batch {
  Tensor x, pad, valid, count, y;
};

Batch make_batch(const Dataset& data, const std::vector<int64_t>& idx) {
  const int64_t B = static_cast<int64_t>(idx.size()), d = data.d;
  int64_t T = 1;
  for (int64_t i : idx) T = std::max(T, data.length(i));
  std::vector<double> x(static_cast<size_t>(B * T * d), 0.0), pad(static_cast<size_t>(B * T), 1.0),
      valid(static_cast<size_t>(B * T), 0.0), count(static_cast<size_t>(B)),
      y(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = idx[b];
    for (int64_t t = 0; t < data.length(n); ++t) {
      for (int64_t c = 0; c < d; ++c)
        x[(b * T + t) * d + c] = data.tokens[(data.offsets[n] + t) * d + c];
      pad[b * T + t] = 0;
      valid[b * T + t] = 1;
    }
    count[b] = static_cast<double>(data.length(n));
    y[b] = static_cast<double>(data.labels[n]);
  }
  return {Tensor::from_vector(x, {B, T, d}), Tensor::from_vector(pad, {B, 1, 1, T}),
          Tensor::from_vector(valid, {B, T, 1}), Tensor::from_vector(count, {B, 1}),
          Tensor::from_vector(y, {B}, DType::i64)};
}

double accuracy(const SoftmaxClassifier& m, const Dataset& data) {
  NoGradGuard g;
  int64_t correct = 0;
  for (int64_t s = 0; s < data.size(); s += 64) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(data.size(), s + 64); ++i) idx.push_back(i);
    Batch b = make_batch(data, idx);
    const std::vector<double> l = m.logits(b.x, b.pad, b.valid, b.count).to_vector();
    for (size_t i = 0; i < idx.size(); ++i)
      correct += ((l[2 * i + 1] > l[2 * i]) ? 1 : 0) == data.labels[idx[i]];
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

int hardmax_spam(const std::vector<std::string>& args) {
  HardmaxArgs a("hardmax-spam", args,
                {"--d", "--max-words", "--train-fraction", "--limit", "--seed", "--train-seconds",
                 "--width", "--layers", "--heads", "--lr", "--batch", "--threads"},
                {});
  // One thread unless told otherwise: the transformer's small ops gain nothing from a second
  // thread, and on a machine whose cores are shared each parallel region waits for the slower one.
  kernels::set_cpu_threads(static_cast<int>(a.integer("--threads", 1)));
  const int64_t d = a.integer("--d", 16), max_words = a.integer("--max-words", 64);
  const double frac = a.number("--train-fraction", 0.8);
  GRADUS_CHECK(frac > 0 && frac < 1, "hardmax-spam",
               "--train-fraction must lie in (0, 1), found {}", frac);
  const uint64_t seed = static_cast<uint64_t>(a.integer("--seed", 0));
  const Corpus c = read_corpus(spam_dir(), max_words, a.integer("--limit", 0), seed);
  const int64_t n = static_cast<int64_t>(c.labels.size()), n_train = std::llround(frac * n);
  std::vector<int64_t> tr, te;
  for (int64_t i = 0; i < n; ++i) (i < n_train ? tr : te).push_back(i);
  const Dataset train = to_dataset(c, tr, d, "spam_assassin (train)");
  const Dataset test = to_dataset(c, te, d, "spam_assassin (held out)");
  int64_t spam_train = 0, spam_test = 0;
  for (int64_t y : train.labels) spam_train += y;
  for (int64_t y : test.labels) spam_test += y;
  nlohmann::json out;
  out["data"] = {{"messages_read", c.read},
                 {"dropped_empty", c.empty},
                 {"dropped_conflicting", c.conflicting},
                 {"train", train.size()},
                 {"held_out", test.size()},
                 {"spam_fraction_held_out", double(spam_test) / test.size()},
                 {"d", d},
                 {"max_words", max_words},
                 {"tokens_train", train.num_tokens()}};
  out["majority_baseline_held_out"] =
      std::max(spam_test, test.size() - spam_test) / static_cast<double>(test.size());
  // ---- hardmax: build, verify, held out ----
  BuildOptions o;
  o.seed = seed;
  const BuildResult r = build(train, o);
  const Classification held = classify(r.net, test);
  int64_t nearest = 0, exact_code = 0;
  for (int64_t i = 0; i < test.size(); ++i) {
    const int64_t p = held.readout[i] >= 0.5 ? 1 : 0;  // the nearest of the two codes
    nearest += p == test.labels[i];
    exact_code += held.predicted[i] == 0 || held.predicted[i] == 1;
  }
  out["hardmax"] = {{"blocks", r.report.blocks},
                    {"parameters", r.report.parameters + d},
                    {"train_accuracy", r.report.train_accuracy},
                    {"held_out_accuracy", static_cast<double>(nearest) / test.size()},
                    {"held_out_readout_on_a_code", static_cast<double>(exact_code) / test.size()},
                    {"build_seconds", r.report.build_seconds},
                    {"verify_seconds", r.report.verify_seconds},
                    {"margins", r.report.to_json()["margins"]}};
  std::cerr << "hardmax-spam: hardmax built (" << r.report.blocks
            << " blocks), training the softmax "
            << "transformer...\n";
  // ---- softmax transformer ----
  const int64_t width = a.integer("--width", 64), layers = a.integer("--layers", 2),
                heads = a.integer("--heads", 4), batch = a.integer("--batch", 32);
  const double lr = a.number("--lr", 1e-3), budget = a.number("--train-seconds", 120);
  SoftmaxClassifier m(d, width, heads, layers, seed);
  Adam opt(m.params, lr);
  Rng rng(seed + 99);
  std::vector<int64_t> order(static_cast<size_t>(train.size()));
  for (int64_t i = 0; i < train.size(); ++i) order[i] = i;
  const auto t0 = Clock::now();
  int64_t steps = 0, epochs = 0;
  double last_loss = 0;
  while (since(t0) < budget) {
    for (int64_t i = train.size() - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    for (int64_t s = 0; s + batch <= train.size() && since(t0) < budget; s += batch) {
      Batch b =
          make_batch(train, std::vector<int64_t>(order.begin() + s, order.begin() + s + batch));
      Tensor loss = cross_entropy(m.logits(b.x, b.pad, b.valid, b.count), b.y);
      opt.zero_grad();
      backward(loss);
      opt.step();
      last_loss = loss.item();
      ++steps;
    }
    ++epochs;
  }
  const double train_s = since(t0);
  out["softmax_transformer"] = {{"parameters", m.num_parameters()},
                                {"width", width},
                                {"layers", layers},
                                {"heads", heads},
                                {"steps", steps},
                                {"epochs", epochs},
                                {"batch", batch},
                                {"lr", lr},
                                {"final_loss", last_loss},
                                {"train_seconds", train_s},
                                {"train_accuracy", accuracy(m, train)},
                                {"held_out_accuracy", accuracy(m, test)}};
  std::cout << out.dump(2) << "\n";
  return 0;
}

const bool kRegistered = register_command(
    {"hardmax-spam",
     "hardmax-spam [--d 16] [--max-words 64] [--train-fraction 0.8] [--limit N] [--seed S]\n"
     "      [--train-seconds 120] [--width 64] [--layers 2] [--heads 4] [--lr 1e-3] [--batch 32]\n"
     "      [--threads 1]\n"
     "    build the exact hardmax classifier of SpamAssassin spam vs ham (scripts/fetch-data "
     "spam)\n"
     "    and compare its held-out accuracy with a softmax transformer trained for a few minutes",
     hardmax_spam});

}  // namespace
}  // namespace gradus::experiments
