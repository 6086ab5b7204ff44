public import Foundation

/// `object_lock`: S3 Object Lock retention set on every object Cairn
/// uploads, so that for `days` after it was written the store itself
/// refuses to delete or overwrite that version of it (docs/STORAGE.md).
///
/// Cairn never asks the store how long an object is locked: it reckons the
/// lock from times it already has (a backup's finish time and the newest
/// write the listing shows, a segment's archive time), plus
/// ``ObjectLockConfig/margin`` for the moments between those times and
/// the uploads and for clocks a little apart.
public struct ObjectLockConfig: Hashable, Sendable, CustomStringConvertible {
    /// The S3 retention mode.
    public enum Mode: String, Hashable, Sendable, CaseIterable, Codable {
        /// Nobody can shorten or remove the lock, not even the account's root user.
        case compliance
        /// Users with `s3:BypassGovernanceRetention` can remove the lock.
        case governance

        /// The value of `x-amz-object-lock-mode`.
        public var headerValue: String { rawValue.uppercased() }
    }

    public var mode: Mode
    /// How long each object stays locked after it is written, in whole days (at least 1).
    public var days: Int

    /// The longest lock accepted: 100 years, S3's limit for a bucket's default retention.
    public static let maximumDays = 36_500
    /// Added to every reckoned lock, so that Cairn never counts an object
    /// unlocked while the store still holds it: the `MANIFEST` is written a
    /// moment after the finish time it records, and the host that prunes
    /// may run a little behind the one that uploaded.
    public static let margin: TimeInterval = 3600

    public init(mode: Mode, days: Int) {
        self.mode = mode
        self.days = days
    }

    public var duration: TimeInterval { TimeInterval(days) * 86_400 }

    /// `compliance, 30 days`.
    public var description: String { "\(mode.rawValue), \(days) day\(days == 1 ? "" : "s")" }

    /// The retain-until date of an object uploaded at `now`: `days` later,
    /// rounded up to the whole second (the header carries no fraction).
    public func retainUntil(uploadedAt now: Date) -> Date {
        Date(timeIntervalSince1970: (now.timeIntervalSince1970 + duration).rounded(.up))
    }

    /// The two headers S3's `PutObject` and `CreateMultipartUpload` take for
    /// an object uploaded at `now`: `x-amz-object-lock-mode` and
    /// `x-amz-object-lock-retain-until-date` (ISO 8601, UTC).
    public func headers(uploadedAt now: Date) -> [(name: String, value: String)] {
        [("x-amz-object-lock-mode", mode.headerValue),
         ("x-amz-object-lock-retain-until-date", UTCTime.rfc3339(retainUntil(uploadedAt: now), fractional: false))]
    }

    /// Until when Cairn counts objects written no later than `written` as
    /// locked: `days` after it, plus ``margin``.
    public func lockedUntil(writtenBy written: Date) -> Date {
        written.addingTimeInterval(duration + Self.margin)
    }

    /// The lock's end when it is still in force at `now`, else nil.
    public func lockEnd(writtenBy written: Date, now: Date) -> Date? {
        let until = lockedUntil(writtenBy: written)
        return until > now ? until : nil
    }

    /// The phrase a prune reports: `locked until 2026-12-30T17:00:00Z (object_lock compliance, 30 days)`.
    public func reason(until: Date) -> String {
        "locked until \(UTCTime.rfc3339(until, fractional: false)) (object_lock \(mode.rawValue), \(days) day\(days == 1 ? "" : "s"))"
    }

    /// Reads the `object_lock` object, refusing unknown keys and bad values with one sentence naming the key.
    static func parse(_ reader: ConfigReader) throws -> ObjectLockConfig {
        try reader.rejectUnknownKeys(["mode", "days"])
        let source = reader.source
        guard let text = try reader.string("mode") else {
            throw CairnError(.configuration, "the configuration \(source) sets object_lock without \(reader.name("mode")); add \"governance\" or \"compliance\"")
        }
        guard let mode = Mode(rawValue: text.lowercased()) else {
            throw CairnError(.configuration, "\(reader.name("mode")) in \(source) is \"\(clip(text, limit: 40))\"; use \"governance\" or \"compliance\"")
        }
        guard let days = try reader.int("days", range: -1_000_000_000...1_000_000_000) else {
            throw CairnError(.configuration, "the configuration \(source) sets object_lock without \(reader.name("days")); add how many days each object stays locked, e.g. 30")
        }
        guard days >= 1 else {
            throw CairnError(.configuration, "\(reader.name("days")) in \(source) is \(days); it must be at least 1, since S3 locks objects for whole days")
        }
        guard days <= maximumDays else {
            throw CairnError(.configuration, "\(reader.name("days")) in \(source) is \(days); it must be at most \(maximumDays) (100 years)")
        }
        return ObjectLockConfig(mode: mode, days: days)
    }
}
