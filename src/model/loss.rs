//! Classification loss and accuracy.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, backend::Backend};

/// Mean cross-entropy with label smoothing ε, as PyTorch's
/// `CrossEntropyLoss(label_smoothing=ε)`: (1 − ε)·NLL + ε·mean over classes of −log p.
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    smoothing: f64,
) -> Tensor<B, 1> {
    let [n, classes] = logits.dims();
    let logp = log_softmax(logits, 1);
    let nll = logp.clone().gather(1, labels.reshape([n, 1])).neg().mean();
    if smoothing == 0.0 {
        return nll;
    }
    let uniform = logp.sum_dim(1).neg().mean().div_scalar(classes as f64);
    nll.mul_scalar(1.0 - smoothing) + uniform.mul_scalar(smoothing)
}

/// How many rows have their label among the `k` largest logits (host-side, from logits data).
pub fn correct_top_k(logits: &[f32], classes: usize, labels: &[i64], k: usize) -> usize {
    logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, label)| {
            // Non-finite logits (a diverged model) are never correct: with NaN no logit is
            // "strictly greater" than the target's, which would rank every label first.
            if row.iter().any(|v| !v.is_finite()) {
                return false;
            }
            let target = row[**label as usize];
            // Rank = number of logits strictly greater than the target's (ties favour the label).
            row.iter().filter(|&&v| v > target).count() < k
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn smoothed_cross_entropy_by_hand() {
        let device = Default::default();
        let logits =
            Tensor::<Flex, 2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [1, 3]), &device);
        let labels = Tensor::<Flex, 1, Int>::from_data(TensorData::new(vec![0i64], [1]), &device);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let nll = lse - 1.0;
        let mean_neg_logp = ((lse - 1.0) + (lse - 2.0) + (lse - 3.0)) / 3.0;
        let expected = 0.9 * nll + 0.1 * mean_neg_logp;
        let got = cross_entropy(logits, labels, 0.1).into_scalar() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn top_k_counts() {
        let logits = [0.1, 0.5, 0.4, 0.9, 0.0, 0.1];
        assert_eq!(correct_top_k(&logits, 3, &[1, 2], 1), 1);
        assert_eq!(correct_top_k(&logits, 3, &[2, 2], 2), 2);
        // A row with a NaN or an infinity is never correct, whatever k.
        let nan = [f32::NAN, f32::NAN, f32::NAN, 0.0, f32::INFINITY, 1.0];
        assert_eq!(correct_top_k(&nan, 3, &[0, 2], 1), 0);
        assert_eq!(correct_top_k(&nan, 3, &[0, 2], 3), 0);
    }
}
