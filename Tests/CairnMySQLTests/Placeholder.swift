// Package.swift declares this test target; git keeps no empty directory, so
// this file keeps the target buildable on a fresh clone until it has tests.
