import Foundation

/// How long backups are kept: `retention` in the configuration.
///
/// Every rule says what to keep; whatever no rule keeps is removed. The
/// rules always hold together: a kept incremental keeps its whole chain back
/// to its full backup, and the newest restorable point is always kept.
/// docs/RETENTION.md explains each key with examples.
public struct RetentionPolicy: Hashable, Sendable {
    /// `min_count`: the newest this-many complete full backups are always kept (at least 1).
    public var minCount: Int
    /// `min_age`: nothing younger than this is removed.
    public var minAge: ConfigDuration
    /// `pitr_window`: every second in the last this-long that is restorable stays restorable.
    public var pitrWindow: ConfigDuration?
    /// `keep_daily`: the newest full backup of each of the last N days (UTC) stays restorable.
    public var keepDaily: Int
    /// `keep_weekly`: the newest full backup of each of the last N ISO weeks (Monday to Sunday, UTC).
    public var keepWeekly: Int
    /// `keep_monthly`: the newest full backup of each of the last N calendar months (UTC).
    public var keepMonthly: Int
    /// `incomplete_after`: an incomplete backup is removed once both its
    /// start (its name's time) and its last write are older than this.
    public var incompleteAfter: ConfigDuration

    public static let defaultIncompleteAfter = ConfigDuration(seconds: 24 * 3600)
    /// The shortest `incomplete_after`: a running backup's data files appear
    /// only when each is finished, so a physical backup can show nothing new for a long time.
    public static let minimumIncompleteAfter = ConfigDuration(seconds: 3600)

    public init(minCount: Int = 1, minAge: ConfigDuration = ConfigDuration(seconds: 0), pitrWindow: ConfigDuration? = nil,
                keepDaily: Int = 0, keepWeekly: Int = 0, keepMonthly: Int = 0,
                incompleteAfter: ConfigDuration = RetentionPolicy.defaultIncompleteAfter) {
        self.minCount = minCount
        self.minAge = minAge
        self.pitrWindow = pitrWindow
        self.keepDaily = keepDaily
        self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly
        self.incompleteAfter = incompleteAfter
    }

    static let knownKeys = ["min_count", "min_age", "pitr_window", "keep_daily", "keep_weekly", "keep_monthly", "incomplete_after"]

    /// Reads the `retention` object, refusing unknown keys and bad values with a sentence naming the key.
    static func parse(_ reader: ConfigReader) throws -> RetentionPolicy {
        try reader.rejectUnknownKeys(knownKeys)
        let source = reader.source
        var policy = RetentionPolicy()
        let wide = -1_000_000_000...1_000_000_000
        if let n = try reader.int("min_count", range: wide) {
            guard n >= 1 else {
                throw CairnError(.configuration, "\(reader.name("min_count")) in \(source) is \(n); it must be at least 1, so the newest full backup is never removed")
            }
            policy.minCount = n
        }
        for (key, path) in [("keep_daily", \RetentionPolicy.keepDaily), ("keep_weekly", \.keepWeekly), ("keep_monthly", \.keepMonthly)] {
            if let n = try reader.int(key, range: wide) {
                guard n >= 0 else {
                    throw CairnError(.configuration, "\(reader.name(key)) in \(source) is \(n); it must be 0 or more")
                }
                policy[keyPath: path] = n
            }
        }
        if let age = try reader.duration("min_age") {
            policy.minAge = age
        }
        if let window = try reader.duration("pitr_window") {
            guard window.seconds > 0 else {
                throw CairnError(.configuration, "\(reader.name("pitr_window")) in \(source) is 0s; give a window longer than 0s, or leave the key out for none")
            }
            policy.pitrWindow = window
        }
        if let after = try reader.duration("incomplete_after") {
            guard after >= minimumIncompleteAfter else {
                throw CairnError(.configuration, "\(reader.name("incomplete_after")) in \(source) is \(after); it must be at least \(minimumIncompleteAfter), because a running backup's data files appear only when each is finished and a shorter wait could remove a backup that is still running")
            }
            policy.incompleteAfter = after
        }
        return policy
    }

    /// The policy as the configuration would write it.
    public var summary: String {
        var parts = ["min_count \(minCount)"]
        if minAge.seconds > 0 { parts.append("min_age \(minAge)") }
        if let pitrWindow { parts.append("pitr_window \(pitrWindow)") }
        if keepDaily > 0 { parts.append("keep_daily \(keepDaily)") }
        if keepWeekly > 0 { parts.append("keep_weekly \(keepWeekly)") }
        if keepMonthly > 0 { parts.append("keep_monthly \(keepMonthly)") }
        parts.append("incomplete_after \(incompleteAfter)")
        return parts.joined(separator: ", ")
    }
}
