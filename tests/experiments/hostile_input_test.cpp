// Inputs found by the libFuzzer targets (tests/fuzz/, scripts/fuzz), minimised: each once made a
// reader crash, misbehave or throw something other than gradus::Error. Each must now be a clear
// gradus::Error naming the file.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "experiments/lib/descriptor.h"
#include "models/hardmax/dataset.h"
#include "models/io/safetensors.h"
#include "support/expect_error.h"

namespace gradus {
namespace {

class HostileInput : public ::testing::Test {
 protected:
  // A file holding exactly `bytes`, removed after the test.
  std::string file(const std::string& name, const std::string& bytes) {
    // Named after the test: ctest runs tests in parallel processes.
    const std::string path =
        (std::filesystem::temp_directory_path() /
         ("gradus_hostile_" +
          std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "_" +
          name))
            .string();
    std::ofstream(path, std::ios::binary) << bytes;
    paths_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const std::string& p : paths_) std::remove(p.c_str());
  }

 private:
  std::vector<std::string> paths_;
};

// Labels above INT64_MAX were read with get<int64_t>, which wraps: 2^64 - 1 became the valid label
// -1 and 2^63 became INT64_MIN, whose std::llabs is undefined (and passed the range check).
TEST_F(HostileInput, HardmaxLabelsBeyondInt64AreOutOfRange) {
  for (const char* y :
       {"18446744073709551615", "9223372036854775808", "-9223372036854775808", "1000001"}) {
    const std::string path =
        file("labels.jsonl",
             std::string("{\"x\": [[1, 0]], \"y\": 0}\n{\"x\": [[2, 0]], \"y\": ") + y + "}\n");
    testing::expect_error([&] { hardmax::load_jsonl(path); },
                          {path + ":2", "out of range", "|y| <= 1000000"});
  }
  hardmax::Dataset d;
  d.d = 1;
  d.add(std::vector<double>{1.0}, INT64_MIN);
  testing::expect_error([&] { d.validate(); }, {"label", "out of range"});
}

// Found by hardmax_jsonl_fuzz (minimised): a number beyond double's range makes nlohmann throw
// out_of_range (406, "number overflow"), not the parse_error the readers caught, so a
// nlohmann::json::exception escaped instead of a gradus::Error.
TEST_F(HostileInput, NumberBeyondDoubleIsAnError) {
  const std::string jsonl =
      file("big.jsonl", "{\"x\": [[1, 0]], \"y\": 0}\n{\"x\": [[1e999, 0]], \"y\": 1}\n");
  testing::expect_error([&] { hardmax::load_jsonl(jsonl); },
                        {jsonl + ":2: not JSON", "number overflow parsing '1e999'"});

  const std::string descriptor = file("big.json", "{\"train\": {\"lr\": 1e999}}");
  testing::expect_error(
      [&] { experiments::load_descriptor(descriptor); },
      {"descriptor: " + descriptor + " is not valid JSON: number overflow parsing '1e999'"});

  // As a --set value it is not JSON, so it is taken as a string, which validation reports.
  const std::string ok = file("ok.json", "{\"data\": {\"corpus\": \"moby_dick_excerpt\"}}");
  testing::expect_error([&] { experiments::load_descriptor(ok, {"train.lr=1e999"}); },
                        {"train.lr: expected a positive number, found \"1e999\" (a string)"});
}

// Found by descriptor_fuzz (minimised): a --set value that is not UTF-8 was kept as a string, and
// quoting it in an error message (json::dump) threw a json::type_error (316).
TEST_F(HostileInput, OverrideThatIsNotUtf8IsAnError) {
  const std::string ok = file("ok.json", "{\"data\": {\"corpus\": \"moby_dick_excerpt\"}}");
  testing::expect_error(
      [&] { experiments::load_descriptor(ok, {"model.pna_aggregators=mean,m\xe1x"}); },
      {"--set: \"model.pna_aggregators=mean,m\xef\xbf\xbdx\" is not valid UTF-8 text"});
}

// 200,000 nested arrays (400 kB): quoting such a value in an error message (nlohmann's dump
// recurses once per level) overflowed the stack: a segmentation fault instead of an error.
std::string deep(int64_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }
constexpr int64_t kDeep = 200000;

TEST_F(HostileInput, DeeplyNestedDescriptorIsAnError) {
  const std::string top = file("top.json", deep(kDeep));
  testing::expect_error([&] { experiments::load_descriptor(top); },
                        {"descriptor: " + top, "nests arrays and objects 200000 deep"});
  const std::string inner = file("inner.json", "{\"data\": {\"corpus\": " + deep(kDeep) + "}}");
  testing::expect_error([&] { experiments::load_descriptor(inner); },
                        {"descriptor: " + inner, "200002 deep"});
  const std::string ok = file("ok.json", "{\"data\": {\"corpus\": \"moby_dick_excerpt\"}}");
  testing::expect_error(
      [&] { experiments::load_descriptor(ok, {"data.corpus=" + deep(kDeep)}); },
      {"--set: the value of \"data.corpus\" nests arrays and objects 200000 deep"});
}

TEST_F(HostileInput, DeeplyNestedSafetensorsHeaderIsAnError) {
  std::string header =
      "{\"w\": {\"dtype\": \"F32\", \"shape\": " + deep(kDeep) + ", \"data_offsets\": [0, 0]}}";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  const std::string path = file("deep.safetensors", bytes + header);
  testing::expect_error([&] { load_safetensors(path); },
                        {"load_safetensors: '" + path + "': the header nests", "200002 deep"});
}

TEST_F(HostileInput, DeeplyNestedJsonLineIsAnError) {
  const std::string path =
      file("deep.jsonl", "{\"x\": [[1, 0]], \"y\": 0}\n{\"x\": " + deep(kDeep) + ", \"y\": 1}\n");
  testing::expect_error([&] { hardmax::load_jsonl(path); },
                        {path + ":2: the line nests arrays and objects 200001 deep"});
}

}  // namespace
}  // namespace gradus
