// Text as sets of points in R^d, for the hardmax construction on real data (the spam experiment,
// experiments/lib/hardmax_spam.cpp):
//  - words: lower-cased runs of ASCII letters and digits of 2 to 24 characters, from the subject
//    line and the body of an e-mail (other header lines are skipped: they carry routing noise and,
//    in this corpus, tell-tale server names), kept once each in order of first appearance and
//    capped at `max_words`;
//  - embedding: each word's 64-bit FNV-1a hash seeds a fixed Gaussian vector N(0, I_d / d) (no
//    training, no vocabulary file: the same word always maps to the same point).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gradus::hardmax {

// The distinct words of a raw e-mail (RFC 822 headers, a blank line, the body), in order.
std::vector<std::string> email_words(std::string_view message, int64_t max_words);
// The distinct words of plain text, in order.
std::vector<std::string> text_words(std::string_view text, int64_t max_words);
uint64_t fnv1a(std::string_view s);
// The word's point in R^d (d doubles), a function of (word, d, seed) only.
std::vector<double> embed_word(std::string_view word, int64_t d, uint64_t seed = 0);

}  // namespace gradus::hardmax
