// The experiment descriptor: defaults, each kind of error (unknown key with a suggestion, wrong
// type, out of range, cross-key constraints, bad --set), overrides, the committed descriptors and
// the reference in docs/experiments.md.
#include "experiments/lib/descriptor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kernels/backend_info.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

json minimal() { return json::parse(R"({"data": {"corpus": "moby_dick_excerpt"}})"); }

// The DescriptorError that parsing `doc` raises (fails the test when it parses).
DescriptorError error_of(const json& doc, const std::vector<std::string>& overrides = {}) {
  try {
    parse_descriptor(doc, "test.json", overrides);
  } catch (const DescriptorError& e) {
    return e;
  }
  ADD_FAILURE() << "descriptor was accepted: " << doc.dump();
  return DescriptorError("test.json", {});
}

// The single problem of an invalid document, as "path: message".
std::string only_problem(const json& doc, const std::vector<std::string>& overrides = {}) {
  DescriptorError e = error_of(doc, overrides);
  EXPECT_EQ(e.problems().size(), 1u) << e.what();
  if (e.problems().empty()) return "";
  return e.problems()[0].path + ": " + e.problems()[0].message;
}

json with(json doc, const std::string& section, const std::string& key, json value) {
  doc[section][key] = std::move(value);
  return doc;
}

TEST(Descriptor, MinimalGetsEveryDefault) {
  Descriptor d = parse_descriptor(minimal(), "test.json", {}, "my_run");
  EXPECT_EQ(d.data.corpus, "moby_dick_excerpt");
  EXPECT_EQ(d.model, ModelConfig());
  EXPECT_EQ(d.data.context, ModelConfig().max_position_embeddings);  // defaults to the model's
  EXPECT_EQ(d.data.val_fraction, DataSpec().val_fraction);
  EXPECT_EQ(d.train.optimizer, "adamw");
  EXPECT_EQ(d.train.steps, TrainSpec().steps);
  EXPECT_EQ(d.train.beta2, TrainSpec().beta2);
  EXPECT_EQ(d.eval.every, EvalSpec().every);
  EXPECT_EQ(d.log.name, "my_run");
  EXPECT_EQ(d.log.dir, "runs");
  EXPECT_EQ(d.seed, 0u);
  EXPECT_EQ(d.device, "cpu");
}

TEST(Descriptor, ResolvedFormParsesBackToTheSame) {
  json doc = minimal();
  doc["train"] = {{"lr", 0.002}, {"betas", {0.8, 0.9}}, {"steps", 1e4}};
  doc["model"] = {{"hidden_size", 64}, {"num_attention_heads", 2}, {"tie_word_embeddings", true}};
  doc["seed"] = 18446744073709551615ull;
  Descriptor d = parse_descriptor(doc, "test.json");
  EXPECT_EQ(d.train.steps, 10000);  // 1e4 is an integral number
  EXPECT_EQ(d.seed, 18446744073709551615ull);
  json resolved = d.to_json();
  Descriptor again = parse_descriptor(resolved, "resolved.json");
  EXPECT_EQ(again.to_json(), resolved);
  // Every schema key appears in the resolved form.
  for (const DescriptorField& f : descriptor_fields()) {
    std::string pointer = "/" + f.path;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    EXPECT_TRUE(resolved.contains(json::json_pointer(pointer))) << f.path;
  }
}

TEST(Descriptor, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(only_problem(with(minimal(), "train", "lrr", 0.1)),
            "train.lrr: unknown key (did you mean \"train.lr\"?)");
  EXPECT_EQ(only_problem(with(minimal(), "train", "batchsize", 8)),
            "train.batchsize: unknown key (did you mean \"train.batch_size\"?)");
  EXPECT_EQ(only_problem(with(minimal(), "train", "warmup", 8)),
            "train.warmup: unknown key (did you mean \"train.warmup_steps\"?)");
  json doc = minimal();
  doc["trian"] = {{"lr", 0.1}};
  EXPECT_EQ(only_problem(doc), "trian: unknown key (did you mean \"train\"?)");
}

TEST(Descriptor, KeyInTheWrongSectionPointsToItsSection) {
  EXPECT_EQ(only_problem(with(minimal(), "model", "lr", 0.1)),
            "model.lr: unknown key (did you mean \"train.lr\"?)");
  json doc = minimal();
  doc["steps"] = 5;
  EXPECT_EQ(only_problem(doc), "steps: unknown key (did you mean \"train.steps\"?)");
}

TEST(Descriptor, UnknownKeyWithNothingCloseListsTheKeys) {
  std::string p = only_problem(with(minimal(), "eval", "frequency", 3));
  EXPECT_EQ(p, "eval.frequency: unknown key; the keys of eval are: every, batches");
}

TEST(Descriptor, WrongTypeSaysWhatWasFound) {
  EXPECT_EQ(only_problem(with(minimal(), "train", "lr", "fast")),
            "train.lr: expected a positive number, found \"fast\" (a string)");
  EXPECT_EQ(only_problem(with(minimal(), "train", "steps", true)),
            "train.steps: expected a positive integer, found true (a boolean)");
  EXPECT_EQ(only_problem(with(minimal(), "model", "tie_word_embeddings", 1)),
            "model.tie_word_embeddings: expected true or false, found 1 (an integer)");
  EXPECT_EQ(only_problem(with(minimal(), "data", "corpus", json::array({1}))),
            "data.corpus: expected a data set name or a file path, found [1] (an array)");
  json doc = minimal();
  doc["train"] = 5;
  EXPECT_EQ(only_problem(doc),
            "train: expected an object (the train section), found 5 (an integer)");
  EXPECT_EQ(only_problem(json::array({1, 2})),
            ": expected a JSON object with the sections data, model, train, eval, log, found "
            "[1,2] (an array)");
}

TEST(Descriptor, OutOfRangeGivesTheRange) {
  EXPECT_EQ(only_problem(with(minimal(), "train", "lr", -1)),
            "train.lr: expected a positive number, found -1");
  EXPECT_EQ(only_problem(with(minimal(), "train", "steps", 10.5)),
            "train.steps: expected a positive integer, found 10.5");
  EXPECT_EQ(only_problem(with(minimal(), "data", "val_fraction", 1)),
            "data.val_fraction: expected a number in (0, 1), found 1");
  EXPECT_EQ(only_problem(with(minimal(), "model", "vocab_size", 100)),
            "model.vocab_size: expected an integer >= 256, found 100");
  EXPECT_EQ(only_problem(with(minimal(), "eval", "every", -3)),
            "eval.every: expected an integer >= 0, found -3");
  EXPECT_EQ(only_problem(with(minimal(), "train", "betas", json::array({0.9, 1.0}))),
            "train.betas[1]: expected a number in [0, 1), found 1.0");
  EXPECT_EQ(only_problem(with(minimal(), "train", "betas", json::array({0.9}))),
            "train.betas: expected two numbers in [0, 1), found [0.9]");
  EXPECT_EQ(only_problem(with(minimal(), "log", "name", "../x")),
            "log.name: expected a name of letters, digits, '_', '-' or '.' (not starting with "
            "'.'), found \"../x\"");
  json doc = minimal();
  doc["seed"] = -1;
  EXPECT_EQ(only_problem(doc), "seed: expected an integer in [0, 2^64), found -1");
}

TEST(Descriptor, MisspeltChoiceSuggestsTheClosest) {
  EXPECT_EQ(only_problem(with(minimal(), "train", "optimizer", "adamww")),
            "train.optimizer: expected one of \"adamw\", \"adam\", \"sgd\", found \"adamww\" "
            "(did you mean \"adamw\"?)");
  EXPECT_EQ(only_problem(with(minimal(), "train", "schedule", "linear")),
            "train.schedule: expected one of \"cosine\", \"constant\", found \"linear\"");
}

// bf16 mixed precision computes in bf16, which only the GPU backend does: refused for "cpu",
// accepted for "cuda" and "auto" (where a build without a GPU refuses it when the run starts).
TEST(Descriptor, Bf16PrecisionNeedsTheGpu) {
  json doc = with(minimal(), "train", "precision", "bf16");
  EXPECT_EQ(only_problem(doc),
            "train.precision: \"bf16\" computes in bf16, which only the GPU backend does; set "
            "\"device\": \"cuda\" (or \"auto\" on a GPU machine), or use \"f32\"");
  doc["device"] = "auto";
  EXPECT_EQ(parse_descriptor(doc, "test.json").train.precision, "bf16");
  EXPECT_EQ(only_problem(with(minimal(), "train", "precision", "fp16")),
            "train.precision: expected one of \"f32\", \"bf16\", found \"fp16\" (did you mean "
            "\"bf16\"?)");
}

TEST(Descriptor, ConstraintsBetweenKeys) {
  json doc = minimal();
  doc["model"] = {{"hidden_size", 30}, {"num_attention_heads", 4}};
  EXPECT_EQ(only_problem(doc),
            "model.num_attention_heads: expected a divisor of model.hidden_size (30), found 4");
  doc["model"] = {{"hidden_size", 12}, {"num_attention_heads", 4}};
  EXPECT_EQ(only_problem(doc),
            "model.num_attention_heads: expected a head dim hidden_size / num_attention_heads "
            "that is even (RoPE rotates channel pairs), found 12 / 4 = 3");
  doc = minimal();
  doc["model"] = {{"max_position_embeddings", 16}};
  doc["data"]["context"] = 32;
  EXPECT_EQ(only_problem(doc),
            "data.context: expected at most model.max_position_embeddings (16), found 32");
  doc = minimal();
  doc["train"] = {{"lr", 0.001}, {"min_lr", 0.01}};
  EXPECT_EQ(only_problem(doc), "train.min_lr: expected at most train.lr (0.001), found 0.01");
  doc = minimal();
  doc["train"] = {{"steps", 10}, {"warmup_steps", 20}};
  EXPECT_EQ(only_problem(doc), "train.warmup_steps: expected at most train.steps (10), found 20");
  doc = minimal();
  doc["model"] = {{"attention_kind", "nope"}};
  EXPECT_NE(only_problem(doc).find("model.attention_kind: expected a registered attention kind"),
            std::string::npos);
}

TEST(Descriptor, MissingCorpusIsAnError) {
  std::string p = only_problem(json::object());
  EXPECT_EQ(p.rfind("data.corpus: missing", 0), 0u) << p;
}

TEST(Descriptor, CudaWithoutTheBackendIsAnError) {
  if (kernels::cuda_built()) GTEST_SKIP() << "this build has the CUDA backend";
  json doc = minimal();
  doc["device"] = "cuda";
  std::string p = only_problem(doc);
  EXPECT_EQ(p.rfind("device: \"cuda\" was asked for, but this build has no CUDA backend", 0), 0u)
      << p;
  doc["device"] = "auto";
  EXPECT_EQ(parse_descriptor(doc, "test.json").device, "auto");
}

TEST(Descriptor, EveryProblemIsReportedAtOnce) {
  json doc = minimal();
  doc["train"] = {{"lr", -1}, {"optimiser", "sgd"}, {"steps", "ten"}};
  doc["eval"] = {{"every", 0.5}};
  DescriptorError e = error_of(doc);
  ASSERT_EQ(e.problems().size(), 4u) << e.what();
  std::string what = e.what();
  EXPECT_EQ(what.rfind("invalid descriptor test.json (4 problems):", 0), 0u) << what;
  EXPECT_NE(what.find("\n  train.lr: expected a positive number, found -1"), std::string::npos);
  EXPECT_NE(what.find("\n  train.optimiser: unknown key (did you mean \"train.optimizer\"?)"),
            std::string::npos);
  EXPECT_NE(what.find("\n  train.steps: expected a positive integer, found \"ten\" (a string)"),
            std::string::npos);
  EXPECT_NE(what.find("\n  eval.every: expected an integer >= 0, found 0.5"), std::string::npos);
}

TEST(DescriptorOverride, ValuesParseAsJsonElseAsStrings) {
  Descriptor d = parse_descriptor(
      minimal(), "test.json",
      {"train.lr=0.01", "train.optimizer=sgd", "train.betas=[0.8,0.9]",
       "model.tie_word_embeddings=true", "log.name=\"quoted\"", "data.corpus=moby_dick", "seed=7"});
  EXPECT_EQ(d.train.lr, 0.01);
  EXPECT_EQ(d.train.optimizer, "sgd");
  EXPECT_EQ(d.train.beta1, 0.8);
  EXPECT_EQ(d.train.beta2, 0.9);
  EXPECT_TRUE(d.model.tie_word_embeddings);
  EXPECT_EQ(d.log.name, "quoted");
  EXPECT_EQ(d.data.corpus, "moby_dick");
  EXPECT_EQ(d.seed, 7u);
  // Later overrides win; a section missing from the document is created.
  json doc = json::object();
  apply_override(doc, "data.corpus=a.txt");
  apply_override(doc, "data.corpus=b.txt");
  EXPECT_EQ(doc, json::parse(R"({"data": {"corpus": "b.txt"}})"));
}

TEST(DescriptorOverride, BadPathsAreValidatedLikeTheDocument) {
  EXPECT_EQ(only_problem(minimal(), {"train.lrr=0.1"}),
            "train.lrr: unknown key (did you mean \"train.lr\"?) [from --set train.lrr=0.1]");
  EXPECT_EQ(only_problem(minimal(), {"trian.lr=0.1"}),
            "trian: unknown key (did you mean \"train\"?) [from --set trian.lr=0.1]");
  EXPECT_EQ(only_problem(minimal(), {"train.steps=many"}),
            "train.steps: expected a positive integer, found \"many\" (a string) [from --set "
            "train.steps=many]");
}

TEST(DescriptorOverride, MalformedAssignmentsThrow) {
  auto message = [](const std::string& assignment) {
    json doc = minimal();
    try {
      apply_override(doc, assignment);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("train.lr"), "--set: expected path=value, found \"train.lr\"");
  EXPECT_EQ(message("train..lr=1"),
            "--set: \"train..lr=1\": expected a dotted path such as train.lr before '=', found "
            "\"train..lr\"");
  EXPECT_EQ(message("=1"),
            "--set: \"=1\": expected a dotted path such as train.lr before '=', found \"\"");
  EXPECT_EQ(message("data.corpus.x=1"),
            "--set: \"data.corpus.x=1\": data.corpus is not a section but \"moby_dick_excerpt\" "
            "(a string)");
}

TEST(DescriptorFile, ReadsCommentsAndNamesTheRunAfterTheFile) {
  fs::path dir =
      fs::temp_directory_path() / ("gradus_descriptor_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path file = dir / "my experiment.json";
  std::ofstream(file) << "{\n  // a comment\n  \"data\": {\"corpus\": \"x.txt\"}\n}\n";
  Descriptor d = load_descriptor(file.string());
  EXPECT_EQ(d.log.name, "my_experiment");
  std::ofstream(file) << "{\n  \"data\": {\"corpus\": \"x.txt\",}\n  \"train\": 1\n}\n";
  try {
    load_descriptor(file.string());
    ADD_FAILURE() << "invalid JSON accepted";
  } catch (const DescriptorError&) {
    ADD_FAILURE() << "expected a JSON syntax error";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(file.string() + " is not valid JSON: parse error at line 2"),
              std::string::npos)
        << what;
  }
  try {
    load_descriptor((dir / "absent.json").string());
    ADD_FAILURE() << "missing file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read " + (dir / "absent.json").string()),
              std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(DescriptorFile, CommittedDescriptorsAreValid) {
  for (const char* name : {"lm_tiny_test.json", "lm_moby_baseline.json"}) {
    fs::path path = repo_root() / "experiments" / name;
    Descriptor d = load_descriptor(path.string());
    EXPECT_EQ(d.log.name, path.stem().string());
  }
}

TEST(DescriptorFile, ReferenceDocumentsEveryKey) {
  std::ifstream in(repo_root() / "docs" / "experiments.md");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  for (const DescriptorField& f : descriptor_fields())
    EXPECT_NE(text.str().find("`" + f.path + "`"), std::string::npos)
        << f.path << " is not in docs/experiments.md";
}

TEST(ClosestMatch, OnlyPlausibleMisspellings) {
  std::vector<std::string> keys = {"lr", "min_lr", "steps", "batch_size", "warmup_steps"};
  EXPECT_EQ(closest_match("lrr", keys), "lr");
  EXPECT_EQ(closest_match("LR", keys), "lr");
  EXPECT_EQ(closest_match("step", keys), "steps");
  EXPECT_EQ(closest_match("batch", keys), "batch_size");
  EXPECT_EQ(closest_match("momentum", keys), "");
  EXPECT_EQ(closest_match("x", keys), "");
}

}  // namespace
}  // namespace gradus::experiments
