// The graph-aware kinds from a descriptor: their keys resolve with their defaults, every bad value
// is reported with its path, what was expected and what was found, and a tiny "gin" run of
// experiments/lm_tiny_test.json trains, checkpoints and resumes bit for bit. The fine-tuning runner
// (graph-finetune) on a saved base with each adapter. The protein-like data's labelling rules.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "experiments/lib/descriptor.h"
#include "experiments/lib/graph_finetune.h"
#include "experiments/lib/graph_protein_data.h"
#include "experiments/lib/lm_job.h"
#include "models/checkpoint/checkpoint.h"
#include "support/test_dir.h"
#include "support/tiny_lm_run.h"

namespace gradus::experiments {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path repo_root() { return fs::path(__FILE__).parent_path().parent_path().parent_path(); }

json minimal() { return json{{"data", {{"corpus", "moby_dick_excerpt"}}}}; }

std::string problems_of(const json& doc, const std::vector<std::string>& overrides) {
  try {
    parse_descriptor(doc, "test.json", overrides);
  } catch (const DescriptorError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GraphDescriptor, KeysResolveWithTheirDefaults) {
  Descriptor d = parse_descriptor(minimal(), "test.json", {"model.attention_kind=gin"});
  EXPECT_EQ(d.model.attention_kind, "gin");
  EXPECT_EQ(d.model.graph_mlp_multiplier, 0.5);
  EXPECT_TRUE(d.model.gin_sharpening);
  EXPECT_EQ(d.model.gin_self_term, "eps");
  EXPECT_EQ(d.model.pna_threshold_mode, "sharp_softplus");
  EXPECT_EQ(d.model.pna_aggregators, "sum,mean,max,var");
  json resolved = d.to_json();
  EXPECT_EQ(resolved["model"]["pna_scalers"], "identity");
  EXPECT_EQ(parse_descriptor(resolved, "resolved.json").model, d.model);
  Descriptor p = parse_descriptor(minimal(), "test.json",
                                  {"model.attention_kind=pna", "model.pna_aggregators=max,min,std",
                                   "model.gin_self_term=1+eps", "model.pna_delta=1.5"});
  EXPECT_EQ(p.model.pna_aggregators, "max,min,std");
  EXPECT_EQ(p.model.gin_self_term, "1+eps");
  EXPECT_EQ(p.model.pna_delta, 1.5);
}

TEST(GraphDescriptor, ProteinDescriptorIsValid) {
  Descriptor d = load_descriptor((repo_root() / "experiments" / "graph_protein.json").string(),
                                 {"model.attention_kind=pna"});
  EXPECT_EQ(d.data.corpus, "data/protein_like.txt");
  EXPECT_EQ(d.model.attention_kind, "pna");
  EXPECT_EQ(d.train.schedule, "constant");
}

TEST(GraphDescriptor, ErrorsNameThePathExpectedAndFound) {
  const std::string all =
      problems_of(minimal(), {"model.gin_threshold_mode=top_k", "model.pna_aggregators=sum,median",
                              "model.graph_mlp_multiplier=0.001", "model.gin_self_term=2eps",
                              "model.pna_scalers=identity,identity", "model.graph_topk_fraction=2",
                              "model.gin_sharpening=yes", "model.pna_adjacency=tanh"});
  for (const char* part : {
           "(8 problems)",
           "model.gin_threshold_mode: expected one of \"none\", \"relu\", \"sharp_softplus\", "
           "\"sigmoid\", \"binary\", \"topk\", found \"top_k\" (did you mean \"topk\"?)",
           "model.pna_aggregators: expected a comma-separated list of distinct sum, mean, max, "
           "min, var, std, found \"sum,median\"",
           "model.graph_mlp_multiplier: expected floor(multiplier x head dim 64) >= 1, found 0.001",
           "model.gin_self_term: expected one of \"eps\", \"1+eps\", found \"2eps\"",
           "model.pna_scalers: expected a comma-separated list of distinct identity, "
           "amplification, attenuation, found \"identity,identity\"",
           "model.graph_topk_fraction: expected a number in (0, 1], found 2",
           "model.gin_sharpening: expected true or false, found \"yes\"",
           "model.pna_adjacency: expected one of \"relu\", \"softmax\", found \"tanh\"",
       })
    EXPECT_NE(all.find(part), std::string::npos) << part << "\n  not in:\n" << all;
}

// dir_: a fresh directory for this test's runs, removed at the end. The parameter: the kind.
class GraphLmJob : public testing::TempDirTest, public ::testing::WithParamInterface<const char*> {
 protected:
  GraphLmJob() : TempDirTest(fmt::format("graph_job_{}", GetParam())) {}
  LmRunOptions options() const {
    return testing::tiny_lm_run(
        repo_root(), dir_, {fmt::format("model.attention_kind={}", GetParam()), "train.steps=14"});
  }
  std::ostringstream log_;
};

// Trains (the loss falls), and a run stopped after the checkpoint at step 10 resumes to exactly
// the uninterrupted run's losses: the kind's parameters (3-D per-head weights, gin's rank-0
// sharpening) survive the checkpoint, dropout state included (gin's MLP dropout is on). One kind:
// pna's parameters are of the same forms, and the suite runs on two cores.
TEST_P(GraphLmJob, TrainsAndResumesBitForBit) {
  LmRunResult straight = run_lm(options(), log_);
  ASSERT_TRUE(straight.completed);
  EXPECT_LT(straight.summary["final_train_loss"].get<double>(), std::log(256.0));
  LmRunOptions first = options();
  first.stop_after_step = 12;
  LmRunResult killed = run_lm(first, log_);
  ASSERT_FALSE(killed.completed);
  LmRunOptions again = testing::resume_lm_run(repo_root(), killed.run_dir);
  LmRunResult resumed = run_lm(again, log_);
  ASSERT_TRUE(resumed.completed);
  EXPECT_EQ(resumed.summary["final_train_loss"].get<double>(),
            straight.summary["final_train_loss"].get<double>());
  EXPECT_EQ(resumed.summary["final_val_loss"].get<double>(),
            straight.summary["final_val_loss"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Kinds, GraphLmJob, ::testing::Values("gin"));

// dir_: a fresh directory for the base and the results, removed at the end.
class GraphFinetune : public testing::TempDirTest {
 protected:
  GraphFinetune() : TempDirTest("graph_finetune") {}
};

// Both adapters fine-tune a saved base: LoRA at the rank matching Sparse-GIN's count, Sparse-GIN's
// gates reported per layer, the result written as JSON; the training loss falls.
TEST_F(GraphFinetune, RunsEachAdapterOnASavedBase) {
  ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 32;
  Generator gen(1);
  DecoderLM base(c, gen);
  const std::string path = (dir_ / "base.safetensors").string();
  save_model(path, base);
  for (const char* adapter : {"sparse_gin", "lora"}) {
    SCOPED_TRACE(adapter);
    GraphFinetuneOptions o;
    o.base = path;
    o.corpus = "moby_dick_excerpt";
    o.project_root = repo_root().string();
    o.adapter = adapter;
    o.sparse_gin.rank = 4;
    o.batch_size = 4;
    o.steps = 6;
    o.lr = 2e-2;
    o.eval_every = 3;
    o.eval_batches = 2;
    o.out = (dir_ / fmt::format("{}.json", adapter)).string();
    std::ostringstream log;
    json r = run_graph_finetune(o, log);
    ASSERT_EQ(r["evals"].size(), 3u);  // steps 0, 3, 6
    EXPECT_EQ(r["evals"][2]["step"], 6);
    EXPECT_TRUE(fs::exists(o.out));
    const int64_t gin_count = r["sparse_gin_count_at_rank"];
    if (std::string(adapter) == "lora") {
      EXPECT_EQ(r["lora_rank"],
                graph::lora_rank_matching(c, graph::LoraOptions().targets, gin_count));
      EXPECT_TRUE(r["evals"][1]["gates"].empty());
    } else {
      EXPECT_EQ(r["trainable"], gin_count);
      EXPECT_EQ(r["evals"][0]["gates"], json::array({0.0, 0.5}));
      EXPECT_EQ(r["evals"][1]["density"].size(), 2u);
    }
    EXPECT_NE(log.str().find("trainable"), std::string::npos);
  }
}

// The labels follow the relational rules: a helix motif hyd(i), polar i+1, i+2, hyd(i+3), hyd(i+4);
// a strand motif alternating hyd/polar over i..i+4; the two most frequent structures, ties H, E, C.
TEST(ProteinData, LabelsFollowTheRelationalRules) {
  // A = hydrophobic, K = polar.
  EXPECT_EQ(structure_of("AKKAAKKAAK"), "HHHHHHHHHC");
  EXPECT_EQ(structure_of("KAKAKAKK"), "CEEEEECC");
  EXPECT_EQ(structure_of("KKKKKK"), "CCCCCC");
  EXPECT_EQ(protein_line("AKKAAKKAAK"), "<seq>AKKAAKKAAK</seq><AH><UNSTRUCTURED>");
  EXPECT_EQ(protein_line("KAKAKAKK"), "<seq>KAKAKAKK</seq><BS><UNSTRUCTURED>");
  // Ties go H, E, C: no H and no E here, so the second class is H.
  EXPECT_EQ(protein_line("KKKKK"), "<seq>KKKKK</seq><UNSTRUCTURED><AH>");
  ProteinDataOptions o;
  o.count = 300;
  o.seed = 5;
  const std::vector<std::string> a = protein_lines(o), b = protein_lines(o);
  EXPECT_EQ(a, b);  // deterministic
  std::set<std::string> classes;
  for (const std::string& line : a) {
    ASSERT_EQ(line.rfind("<seq>", 0), 0u) << line;
    const size_t end = line.find("</seq>");
    ASSERT_NE(end, std::string::npos) << line;
    const std::string seq = line.substr(5, end - 5);
    EXPECT_GE(seq.size(), 24u);
    EXPECT_LE(seq.size(), 64u);
    EXPECT_EQ(protein_line(seq), line);
    classes.insert(line.substr(end + 6));
  }
  EXPECT_EQ(classes.size(), 6u);  // every ordered pair of two different structures occurs
}

}  // namespace
}  // namespace gradus::experiments
