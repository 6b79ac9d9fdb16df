-- wrk's summary of one slice as a JSON line: requests, errors and latency percentiles.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "errors": %d, "timeouts": %d, "p50_ms": %.3f, "p99_ms": %.3f}\n',
        summary.requests, e.connect + e.read + e.write + e.status + e.timeout, e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
