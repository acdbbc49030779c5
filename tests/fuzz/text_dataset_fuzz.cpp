// Fuzz target: the text data set (models/data/text_dataset.h) on an arbitrary file.
//
// The first three bytes choose the validation fraction, the context T and the batch size B; the
// rest is the text file. Expected outcome of bad input: a gradus::Error (an empty file, a split
// too short for one window). Checked on success: every batch has shape (B, T), its tokens are
// bytes, and targets are the inputs shifted by one.
#include <string>

#include "fuzz/fuzz_support.h"
#include "models/data/text_dataset.h"

namespace {

void check_batch(const gradus::TokenBatch& batch, int64_t context) {
  const int64_t rows = batch.inputs.size(0);
  if (batch.inputs.shape() != gradus::Shape{rows, context} ||
      batch.targets.shape() != batch.inputs.shape())
    gradus::fuzz::finding("text_dataset_fuzz", "batch of shape " + batch.inputs.describe() +
                                                   " for context " + std::to_string(context));
  const int64_t* x = batch.inputs.data<int64_t>();
  const int64_t* y = batch.targets.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < context; ++t) {
      const int64_t v = x[r * context + t];
      if (v < 0 || v > 255) gradus::fuzz::finding("text_dataset_fuzz", "token out of range");
      if (t + 1 < context && y[r * context + t] != x[r * context + t + 1])
        gradus::fuzz::finding("text_dataset_fuzz", "targets are not the inputs shifted by one");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  // val_fraction in [0, 1) and some values outside it, to reach the constructor's check too.
  const double val_fraction = data[0] < 250 ? data[0] / 250.0 : -0.5 + (data[0] - 250);
  const int64_t context = static_cast<int64_t>(data[1] % 40) - 2;     // -2 .. 37
  const int64_t batch_size = static_cast<int64_t>(data[2] % 10) - 1;  // -1 .. 8
  const std::string path = gradus::fuzz::write_input(data + 3, size - 3, ".txt");

  gradus::fuzz::expect_only_gradus_errors("text_dataset_fuzz", [&] {
    const gradus::TextDataset ds = gradus::TextDataset::from_file(path, val_fraction);
    if (ds.num_tokens() != static_cast<int64_t>(size - 3) ||
        ds.size(gradus::Split::train) + ds.size(gradus::Split::validation) != ds.num_tokens())
      gradus::fuzz::finding("text_dataset_fuzz", "the splits do not hold the file's bytes");
    for (gradus::Split split : {gradus::Split::train, gradus::Split::validation}) {
      gradus::fuzz::expect_only_gradus_errors("text_dataset_fuzz", [&] {
        gradus::Generator gen(/*seed=*/data[0]);
        check_batch(ds.sample(split, batch_size, context, gen), context);
      });
      gradus::fuzz::expect_only_gradus_errors("text_dataset_fuzz", [&] {
        gradus::SequentialWindows windows = ds.windows(split, batch_size, context);
        gradus::TokenBatch batch;
        for (int64_t n = 0; n < 64 && windows.next(batch); ++n) check_batch(batch, context);
      });
    }
  });
  return 0;
}
