//! Explanations of one OOM event: recomputed badness ranking, human text, advice.
