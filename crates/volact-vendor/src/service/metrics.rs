//! The vendor service's `/metrics`: requests by endpoint and result, with a recorder of
//! its own (never the process-wide one), as the host does.

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const REQUESTS: &str = "volact_vendor_requests_total";
const UP: &str = "volact_vendor_up";

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The service's series.
pub struct ServiceMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for ServiceMetrics {
    fn default() -> ServiceMetrics {
        ServiceMetrics::new()
    }
}

impl ServiceMetrics {
    /// A fresh recorder, with `volact_vendor_up 1`.
    pub fn new() -> ServiceMetrics {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        recorder.describe_counter(
            REQUESTS.into(),
            None,
            "Requests to the vendor service, by endpoint and result (ok or the error code).".into(),
        );
        let metrics = ServiceMetrics { recorder, handle };
        metrics
            .recorder
            .register_gauge(&Key::from_name(UP), &METADATA)
            .set(1.0);
        metrics
    }

    /// Counts one request to `endpoint` answered with `result` (`ok` or an error code).
    /// The service answers a few requests a second at most, so the series is looked up
    /// each time rather than kept in a table.
    pub fn request(&self, endpoint: &'static str, result: &'static str) {
        let key = Key::from_parts(
            REQUESTS,
            vec![
                Label::new("endpoint", endpoint),
                Label::new("result", result),
            ],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_endpoint_and_result() {
        let m = ServiceMetrics::new();
        m.request("host-activations", "ok");
        m.request("host-activations", "ok");
        m.request("host-activations", "request-replayed");
        let text = m.render();
        assert!(
            text.contains(
                "volact_vendor_requests_total{endpoint=\"host-activations\",result=\"ok\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("result=\"request-replayed\"} 1"), "{text}");
        assert!(text.contains("volact_vendor_up 1"), "{text}");
    }
}
