import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { clockView, formatClock, incidentActions, requestActions, type Clock } from '../src/utils/desk'
import { countBy, useDesk } from '../src/stores/desk'
import { mayOpen, menuFor } from '../src/utils/menu'

const NOW = new Date('2026-12-07T06:00:00Z') // 14:00 in Xi'an

function running(dueInMin: number, warnInMin: number | null = null): Clock {
  return {
    due_at: new Date(NOW.getTime() + dueInMin * 60000).toISOString(),
    warn_at: warnInMin === null ? null : new Date(NOW.getTime() + warnInMin * 60000).toISOString(),
    status: 'running',
    remaining_s: dueInMin * 60,
  }
}

describe('SLA clocks as people read them', () => {
  it('counts down a running clock, green before the warning and amber after it', () => {
    expect(clockView(running(25, 5), NOW)).toEqual({ status: 'running', tone: 'success', minutes: 25 })
    expect(clockView(running(25, -1), NOW)).toEqual({ status: 'running', tone: 'warning', minutes: 25 })
    expect(formatClock(running(25, 5), NOW)).toBe('剩余 25 分钟')
    expect(formatClock(running(125), NOW, 'en')).toBe('2 h 5 min left')
  })

  it('turns a clock red once its deadline passed, even when the server still said running', () => {
    const clock = running(10)
    const later = new Date(NOW.getTime() + 75 * 60000)
    expect(clockView(clock, later)).toEqual({ status: 'overdue', tone: 'danger', minutes: 65 })
    expect(formatClock(clock, later)).toBe('已超时 1 小时 5 分')
    expect(formatClock(clock, later, 'en')).toBe('overdue by 1 h 5 min')
  })

  it('never shows zero minutes left or over', () => {
    const clock = running(0.2)
    expect(formatClock(clock, NOW)).toBe('剩余 1 分钟')
    expect(formatClock(clock, new Date(NOW.getTime() + 20_000))).toBe('已超时 1 分钟')
  })

  it('keeps the verdict of a stopped clock: met, missed by how much, stopped', () => {
    const due = '2026-12-07T06:30:00Z'
    expect(formatClock({ due_at: due, stopped_at: '2026-12-07T06:10:00Z', status: 'met' }, NOW)).toBe('达标')
    const missed: Clock = { due_at: due, stopped_at: '2026-12-08T08:30:00Z', status: 'missed' }
    expect(clockView(missed, NOW)).toEqual({ status: 'missed', tone: 'danger', minutes: 26 * 60 })
    expect(formatClock(missed, NOW)).toBe('超时 1 天 2 小时')
    expect(formatClock(missed, NOW, 'en')).toBe('missed by 1 d 2 h')
    expect(formatClock({ due_at: due, stopped_at: '2026-12-07T06:05:00Z', status: 'stopped' }, NOW)).toBe('—')
    expect(clockView({ due_at: due, status: 'stopped' }, NOW).tone).toBe('info')
    expect(formatClock(null, NOW)).toBe('—')
  })

  it('counts a working-time deadline in wall time to the deadline the server set', () => {
    // A question asked on Friday 17:50 is due on Monday 09:20 (docs/ops-desk.md).
    const friday = new Date('2026-12-04T09:50:00Z')
    const clock: Clock = { due_at: '2026-12-07T01:20:00Z', status: 'running', warn_at: '2026-12-07T01:12:30Z' }
    expect(formatClock(clock, friday)).toBe('剩余 2 天 15 小时')
    expect(clockView(clock, friday).tone).toBe('success')
  })
})

describe('incident steps by role and status (the /api/ops/incidents rows of the matrix)', () => {
  it('lets O&M work an open incident but not verify it', () => {
    const actions = incidentActions('om_operator', 'open')
    expect(actions).toEqual(['respond', 'workaround', 'root_cause', 'resolve', 'cancel', 'change', 'comment'])
    expect(actions).not.toContain('verify')
  })

  it('lets the city supervisor verify and reopen a resolved incident, never resolve one', () => {
    expect(incidentActions('city_supervisor', 'resolved')).toEqual(['verify', 'reopen', 'comment'])
    expect(incidentActions('city_supervisor', 'open')).toEqual(['comment'])
  })

  it('offers the review once resolved, and nothing but remarks on a cancelled one', () => {
    expect(incidentActions('om_operator', 'resolved')).toContain('review')
    expect(incidentActions('om_operator', 'mitigated')).not.toContain('review')
    expect(incidentActions('om_operator', 'cancelled')).toEqual(['comment'])
  })

  it('leaves district officers remarks only and auditors nothing', () => {
    expect(incidentActions('district_officer', 'open')).toEqual(['comment'])
    expect(incidentActions('auditor', 'open')).toEqual([])
    expect(incidentActions('enterprise_user', 'open')).toEqual([])
  })
})

describe('support-request steps by role, status and requester', () => {
  it('lets O&M accept, answer, resolve and reject a new request', () => {
    expect(requestActions('om_operator', 'submitted', false)).toEqual(['accept', 'reply', 'resolve', 'reject', 'comment'])
  })

  it('lets the enterprise withdraw only its own request, and close or reopen once answered', () => {
    expect(requestActions('enterprise_user', 'submitted', true)).toEqual(['withdraw', 'comment'])
    expect(requestActions('enterprise_user', 'submitted', false)).toEqual(['comment'])
    expect(requestActions('enterprise_user', 'answered', true)).toEqual(['close', 'reopen', 'withdraw', 'comment'])
    expect(requestActions('enterprise_user', 'resolved', true)).toEqual(['close', 'reopen', 'comment'])
  })

  it('gives auditors nothing and a withdrawn request no step', () => {
    expect(requestActions('auditor', 'submitted', false)).toEqual([])
    expect(requestActions('om_operator', 'withdrawn', false)).toEqual([])
  })
})

describe('the desk in the menu follows the permission matrix', () => {
  const names = (role: Parameters<typeof menuFor>[0]) => menuFor(role).filter((i) => i.group === 'desk').map((i) => i.name)

  it('shows an enterprise user its requests and the knowledge base only', () => {
    expect(names('enterprise_user')).toEqual(['requests', 'knowledge'])
    expect(mayOpen('enterprise_user', 'incidents')).toBe(false)
    expect(mayOpen('enterprise_user', 'abnormal')).toBe(false)
  })

  it('shows bureau, O&M and auditors the cases and the report; contacts to city and O&M', () => {
    for (const role of ['city_supervisor', 'om_operator', 'admin'] as const)
      expect(names(role)).toEqual(['incidents', 'requests', 'knowledge', 'abnormal', 'duty'])
    for (const role of ['district_officer', 'auditor'] as const)
      expect(names(role)).toEqual(['incidents', 'requests', 'knowledge', 'abnormal'])
    expect(mayOpen('district_officer', 'duty')).toBe(false)
  })
})

describe('the desk store', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => vi.unstubAllGlobals())

  it('counts by status with one page_size=1 request per status, under the same filters', async () => {
    const totals: Record<string, number> = { open: 3, responded: 1, overdue: 2 }
    const seen: URL[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) => {
        const parsed = new URL(url, 'http://desk')
        seen.push(parsed)
        const key = parsed.searchParams.get('overdue') ? 'overdue' : (parsed.searchParams.get('status') ?? '')
        const body = { items: [], total: totals[key] ?? 0, page: 1, page_size: 1, pages: 0 }
        return new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } })
      }),
    )
    const counts = await countBy('/api/ops/incidents', { level: 'major', status: 'open' }, 'status', ['open', 'responded', 'resolved'])
    expect(counts).toEqual({ open: 3, responded: 1, resolved: 0, overdue: 2 })
    expect(seen).toHaveLength(4)
    for (const url of seen) {
      expect(url.pathname).toBe('/api/ops/incidents')
      expect(url.searchParams.get('level')).toBe('major')
      expect(url.searchParams.get('page_size')).toBe('1')
    }
    // the overdue count keeps the caller's filters; each status count replaces the status
    expect(seen[0].searchParams.get('status')).toBe('open')
    expect(seen.slice(1).map((u) => u.searchParams.getAll('status'))).toEqual([['open'], ['responded'], ['resolved']])
  })

  it('loads the service levels once and leaves counts empty when the desk is unreachable', async () => {
    const fetchMock = vi.fn(async (url: string) =>
      url.startsWith('/api/ops/sla')
        ? new Response(JSON.stringify({ incident_levels: [{ level: 'critical', level_name: '非常严重', response_min: 5, resolution_min: 40, hardware_resolution_min: 1440 }], request_kinds: [], workday_start: '09:00', workday_end: '18:00', warning_share: 0.75 }), { headers: { 'content-type': 'application/json' } })
        : new Response(JSON.stringify({ status: 503, detail: 'down' }), { status: 503 }),
    )
    vi.stubGlobal('fetch', fetchMock)
    const desk = useDesk()
    await desk.loadSla()
    await desk.loadSla()
    expect(fetchMock.mock.calls.filter(([u]) => String(u).startsWith('/api/ops/sla'))).toHaveLength(1)
    expect(desk.levelSla('critical')?.resolution_min).toBe(40)
    expect(desk.levelSla('minor')).toBeNull()
    desk.incidentCounts = { open: 9 }
    await desk.countIncidents()
    expect(desk.incidentCounts).toEqual({})
  })

  it('moves one clock for every countdown and stops it', () => {
    vi.useFakeTimers()
    vi.setSystemTime(NOW)
    const desk = useDesk()
    const stop = desk.follow(1000)
    expect(desk.now.getTime()).toBe(NOW.getTime())
    vi.advanceTimersByTime(3000)
    expect(desk.now.getTime()).toBe(NOW.getTime() + 3000)
    stop()
    vi.advanceTimersByTime(3000)
    expect(desk.now.getTime()).toBe(NOW.getTime() + 3000)
    vi.useRealTimers()
  })
})
