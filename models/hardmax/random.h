// The builder's random numbers: a small counter-free generator (splitmix64) so that a seed fixes
// every direction of a construction on every platform.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace gradus::hardmax {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed ^ 0x6a09e667f3bcc909ull) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
  double normal() {  // Box-Muller
    double u = uniform();
    while (u <= 0) u = uniform();
    const double w = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * w);
  }

 private:
  uint64_t state_;
};

inline std::vector<double> random_unit(Rng& rng, int64_t d) {
  std::vector<double> v(static_cast<size_t>(d));
  double n2 = 0;
  while (n2 == 0) {
    n2 = 0;
    for (double& x : v) {
      x = rng.normal();
      n2 += x * x;
    }
  }
  const double inv = 1.0 / std::sqrt(n2);
  for (double& x : v) x *= inv;
  return v;
}

}  // namespace gradus::hardmax
