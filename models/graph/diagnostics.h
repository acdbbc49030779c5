// What a graph-aware model logs while it trains (docs/graph_attention.md): per layer the learned
// sharpening alpha and per head the learned self weight eps of GIN-Attention, and the degree-scaler
// delta PNA-Attention used in its last forward (with pna_scalers beyond identity). The spec's
// from-scratch comparison reports alpha per layer ("some above 1, some below"), so it must be in
// the metrics, not only in the checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include "models/nn/lm.h"

namespace gradus::graph {

// GIN: {"kind": "gin", "alpha": [per layer], "eps": [[per head] per layer]} ("alpha" is absent
// without gin_sharpening); PNA: {"kind": "pna", "delta": [per layer]} with degree scalers (0
// before the first forward), {"kind": "pna"} without; null for every other kind. Values are
// copied to the host (any device).
nlohmann::json graph_report(const DecoderLM& lm);

}  // namespace gradus::graph
