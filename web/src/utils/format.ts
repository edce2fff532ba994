// Formatting for people: times in the deployment's zone (Asia/Shanghai, the zone HJ 212
// DataTime and every report use), numbers with the locale's grouping, durations in words.

export const TIME_ZONE = 'Asia/Shanghai'

type Locale = 'zh-CN' | 'en'

function parts(value: Date): Record<string, string> {
  const formatter = new Intl.DateTimeFormat('en-GB', {
    timeZone: TIME_ZONE,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  })
  const out: Record<string, string> = {}
  for (const part of formatter.formatToParts(value)) out[part.type] = part.value
  return out
}

function toDate(value: string | number | Date | null | undefined): Date | null {
  if (value === null || value === undefined || value === '') return null
  const date = value instanceof Date ? value : new Date(value)
  return Number.isNaN(date.getTime()) ? null : date
}

/** `2026-12-07 18:05:09` in Asia/Shanghai; `—` for nothing. */
export function formatDateTime(value: string | number | Date | null | undefined, seconds = true): string {
  const date = toDate(value)
  if (!date) return '—'
  const p = parts(date)
  const time = seconds ? `${p.hour}:${p.minute}:${p.second}` : `${p.hour}:${p.minute}`
  return `${p.year}-${p.month}-${p.day} ${time}`
}

/** `2026-12-07` (local day in Asia/Shanghai). */
export function formatDate(value: string | number | Date | null | undefined): string {
  const date = toDate(value)
  if (!date) return '—'
  const p = parts(date)
  return `${p.year}-${p.month}-${p.day}`
}

/** `18:05` (local). */
export function formatTime(value: string | number | Date | null | undefined): string {
  const date = toDate(value)
  if (!date) return '—'
  const p = parts(date)
  return `${p.hour}:${p.minute}`
}

/** The ISO instant of a local (Asia/Shanghai, UTC+8, no daylight saving) day's start. */
export function localDayStart(day: string): string {
  return new Date(`${day}T00:00:00+08:00`).toISOString()
}

/** Today's local date as `YYYY-MM-DD`. */
export function today(now: Date = new Date()): string {
  return formatDate(now)
}

export function formatNumber(value: number | null | undefined, digits = 0, locale: Locale = 'zh-CN'): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  return value.toLocaleString(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** 0.9731 → `97.3%`. */
export function formatPercent(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  return `${(value * 100).toFixed(digits)}%`
}

/** Power in kW with a sensible precision. */
export function formatKw(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2
  return `${value.toFixed(digits)} kW`
}

/** A duration given in minutes: `45 分钟`, `2 小时 5 分`, `3 天 4 小时` (or English). */
export function formatDuration(minutes: number | null | undefined, locale: Locale = 'zh-CN'): string {
  if (minutes === null || minutes === undefined || Number.isNaN(minutes)) return '—'
  const total = Math.max(0, Math.round(minutes))
  const days = Math.floor(total / 1440)
  const hours = Math.floor((total % 1440) / 60)
  const mins = total % 60
  if (locale === 'en') {
    if (days) return `${days} d ${hours} h`
    if (hours) return `${hours} h ${mins} min`
    return `${mins} min`
  }
  if (days) return `${days} 天 ${hours} 小时`
  if (hours) return `${hours} 小时 ${mins} 分`
  return `${mins} 分钟`
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`
}

/** Minutes between two instants (the end defaults to now). */
export function minutesBetween(start: string | null | undefined, end?: string | null, now: Date = new Date()): number | null {
  const from = toDate(start)
  if (!from) return null
  const to = toDate(end ?? null) ?? now
  return (to.getTime() - from.getTime()) / 60000
}

/** Mask all but the last four characters (phone numbers, keys shown in lists). */
export function mask(value: string | null | undefined, keep = 4): string {
  if (!value) return '—'
  if (value.length <= keep) return value
  return '*'.repeat(Math.min(value.length - keep, 6)) + value.slice(-keep)
}
