// The hardmax commands end to end: hardmax-data writes a dataset, build-hardmax a model that
// classify reloads; bad arguments are errors that say what is expected.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "experiments/lib/commands.h"
#include "models/hardmax/dataset.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/model.h"
#include "support/expect_error.h"

namespace gradus::experiments {
namespace {

TEST(HardmaxCli, DataBuildClassify) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string data = (dir / "hardmax_cli.jsonl").string();
  const std::string model = (dir / "hardmax_cli.safetensors").string();
  ASSERT_NE(find_command("hardmax-data"), nullptr);
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(find_command("hardmax-data")
                ->run({"pairs", "--vocab", "8", "--d", "2", "--classes", "3", "--out", data}),
            0);
  EXPECT_EQ(find_command("build-hardmax")->run({data, "--out", model, "--seed", "3"}), 0);
  EXPECT_EQ(find_command("classify")->run({model, data}), 0);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("\"train_accuracy\":1.0"), std::string::npos) << out;
  EXPECT_NE(out.find("\"accuracy\":1.0"), std::string::npos) << out;
  const hardmax::Net net = hardmax::load_net(model);
  EXPECT_EQ(hardmax::classify(net, hardmax::load_jsonl(data)).accuracy, 1.0);
  std::remove(data.c_str());
  std::remove(model.c_str());
}

TEST(HardmaxCli, BadArgumentsSayWhatIsExpected) {
  const Command* b = find_command("build-hardmax");
  ASSERT_NE(b, nullptr);
  gradus::testing::expect_error([&] { b->run({"x.jsonl"}); },
                                {"--out MODEL.safetensors is required"});
  gradus::testing::expect_error(
      [&] {
        b->run({"x.jsonl", "--out", "m", "--dtype", "f16"});
      },
      {"f16"});
  gradus::testing::expect_error(
      [&] {
        b->run({"x.jsonl", "--out", "m", "--bogus"});
      },
      {"unknown option --bogus", "--dtype"});
}

}  // namespace
}  // namespace gradus::experiments
