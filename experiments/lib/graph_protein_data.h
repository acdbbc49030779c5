// Protein-like sequences with relational labels, for the from-scratch comparison of the graph-aware
// kinds (docs/graph_attention.md), in the paper's text format:
//   <seq>MKVLAEL...</seq><AH><BS>
// Sequences are built from segments: helix-like (hydrophobic residues at heptad positions 0, 3, 4:
// the i, i+3 / i, i+4 periodicity), strand-like (hydrophobic and polar alternating: i, i+2 pairs)
// and coil (polar). The labels are computed from the sequence alone by relational rules, not from
// the segments drawn: residue positions i..i+4 are helix (H) where hyd(i), hyd(i+3) and hyd(i+4)
// and not hyd(i+1), hyd(i+2); strand (E) where hyd(i), !hyd(i+1), hyd(i+2), !hyd(i+3), hyd(i+4)
// (and not already H); the rest coil (C). class1 and class2 are the most and second most frequent
// of H, E, C (ties in the order H, E, C), written <AH>, <BS>, <UNSTRUCTURED>.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradus::experiments {

struct ProteinDataOptions {
  int64_t count = 10000;
  int64_t min_length = 24;
  int64_t max_length = 64;
  uint64_t seed = 0;
};

// hydrophobic residues: A V I L M F W Y; polar: the other 12 of the 20.
bool is_hydrophobic(char residue);
// The per-residue structure string (H / E / C) of a sequence by the rules above.
std::string structure_of(const std::string& sequence);
// "<seq>...</seq><class1><class2>" for a sequence.
std::string protein_line(const std::string& sequence);
// `count` sequences (deterministic in the options), one line each.
std::vector<std::string> protein_lines(const ProteinDataOptions& options);

}  // namespace gradus::experiments
