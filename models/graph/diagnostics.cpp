#include "models/graph/diagnostics.h"

#include <memory>

#include "autodiff/tape.h"
#include "models/graph/gin_attention.h"
#include "models/graph/pna_attention.h"

namespace gradus::graph {

nlohmann::json graph_report(const DecoderLM& lm) {
  NoGradGuard no_grad;
  const std::shared_ptr<ModuleList>& layers = lm.model()->layers();
  nlohmann::json alpha = nlohmann::json::array(), eps = nlohmann::json::array(),
                 delta = nlohmann::json::array();
  int gin_layers = 0, pna_layers = 0;
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::shared_ptr<AttentionKind>& attn = lm.model()->layer(i)->self_attn();
    if (auto gin = std::dynamic_pointer_cast<GinAttention>(attn)) {
      ++gin_layers;
      if (gin->sharpening().defined()) alpha.push_back(gin->sharpening().item());
      eps.push_back(gin->eps().to_vector());  // (H, 1, 1) -> H values
    } else if (auto pna = std::dynamic_pointer_cast<PnaAttention>(attn)) {
      ++pna_layers;
      delta.push_back(pna->last_delta());
    }
  }
  if (gin_layers > 0) {
    nlohmann::json out = {{"kind", "gin"}, {"eps", eps}};
    if (!alpha.empty()) out["alpha"] = alpha;
    return out;
  }
  if (pna_layers > 0) {
    // delta exists only for the degree scalers; with "identity" alone there is nothing learned or
    // measured to report.
    if (lm.config().pna_scalers == "identity") return {{"kind", "pna"}};
    return {{"kind", "pna"}, {"delta", delta}};
  }
  return nullptr;
}

}  // namespace gradus::graph
