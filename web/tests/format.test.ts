import { describe, expect, it } from 'vitest'
import {
  formatBytes,
  formatDate,
  formatDateTime,
  formatDuration,
  formatKw,
  formatNumber,
  formatPercent,
  localDayStart,
  mask,
  minutesBetween,
} from '../src/utils/format'

describe('times are shown in Asia/Shanghai whatever the browser zone', () => {
  it('formats an instant in UTC+8', () => {
    expect(formatDateTime('2026-12-07T16:30:05Z')).toBe('2026-12-08 00:30:05')
    expect(formatDateTime('2026-12-07T16:30:05Z', false)).toBe('2026-12-08 00:30')
    expect(formatDate('2026-12-07T15:59:59Z')).toBe('2026-12-07')
    expect(formatDate('2026-12-07T16:00:00Z')).toBe('2026-12-08')
  })

  it('shows a dash for nothing or nonsense', () => {
    expect(formatDateTime(null)).toBe('—')
    expect(formatDateTime('')).toBe('—')
    expect(formatDateTime('not a time')).toBe('—')
  })

  it('gives the UTC instant of a local day start', () => {
    expect(localDayStart('2026-12-07')).toBe('2026-12-06T16:00:00.000Z')
  })
})

describe('numbers', () => {
  it('formats counts, percentages and power', () => {
    expect(formatNumber(1234567)).toBe('1,234,567')
    expect(formatNumber(3.14159, 2)).toBe('3.14')
    expect(formatNumber(undefined)).toBe('—')
    expect(formatPercent(0.9731)).toBe('97.3%')
    expect(formatPercent(null)).toBe('—')
    expect(formatKw(123.456)).toBe('123 kW')
    expect(formatKw(12.345)).toBe('12.3 kW')
    expect(formatKw(2.345)).toBe('2.35 kW')
    expect(formatKw(null)).toBe('—')
  })

  it('formats byte sizes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(1536)).toBe('1.5 KiB')
    expect(formatBytes(10 * 1024 * 1024)).toBe('10.0 MiB')
  })
})

describe('durations', () => {
  it('reads as people say them, in Chinese first', () => {
    expect(formatDuration(45)).toBe('45 分钟')
    expect(formatDuration(125)).toBe('2 小时 5 分')
    expect(formatDuration(1440 * 3 + 240)).toBe('3 天 4 小时')
    expect(formatDuration(125, 'en')).toBe('2 h 5 min')
    expect(formatDuration(-3)).toBe('0 分钟')
    expect(formatDuration(null)).toBe('—')
  })

  it('measures minutes between instants, open-ended to now', () => {
    expect(minutesBetween('2026-12-07T10:00:00Z', '2026-12-07T11:30:00Z')).toBe(90)
    expect(minutesBetween('2026-12-07T10:00:00Z', null, new Date('2026-12-07T10:10:00Z'))).toBe(10)
    expect(minutesBetween(null)).toBeNull()
  })
})

describe('masking', () => {
  it('keeps the last four characters', () => {
    expect(mask('13856048992')).toBe('******8992')
    expect(mask('abc')).toBe('abc')
    expect(mask(null)).toBe('—')
  })
})
