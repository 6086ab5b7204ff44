/// When and how long to wait before trying a failed request again:
/// exponential backoff with full jitter (a uniformly random wait between
/// zero and `base x 2^attempt`, capped), for at most `maxRetries` retries.
public struct S3RetryPolicy: Sendable, Equatable {
    /// Retries after the first attempt (`s3_max_retries`).
    public var maxRetries: Int
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(maxRetries: Int = 5, baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(20)) {
        self.maxRetries = max(0, maxRetries)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The largest wait before retry number `retry` (1 for the first retry).
    public func delayCeiling(forRetry retry: Int) -> Duration {
        let exponent = min(max(retry - 1, 0), 30)
        let ceiling = baseDelay * (1 << exponent)
        return ceiling < maxDelay ? ceiling : maxDelay
    }

    /// A random wait in `0...delayCeiling(forRetry:)`.
    public func delay(forRetry retry: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let ceiling = delayCeiling(forRetry: retry)
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        guard nanoseconds > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...nanoseconds, using: &generator))
    }

    /// Whether a reply from the store is worth trying again: server errors,
    /// throttling, and the few client-side codes that describe a passing fault.
    static func isRetryable(status: Int, code: String?) -> Bool {
        if status >= 500 || status == 429 || status == 408 { return true }
        switch code {
        case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed",
             "Throttling", "ThrottlingException", "TooManyRequests", "BadDigest", "IncompleteBody",
             "OperationAborted":
            return true
        default:
            return false
        }
    }
}
