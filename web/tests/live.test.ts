import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { applyItem, countsOf, enterpriseState, useLive, type OverviewEnterprise } from '../src/stores/live'

function enterprise(id: string, overrides: Partial<OverviewEnterprise> = {}): OverviewEnterprise {
  return {
    id,
    name: `企业${id}`,
    district_code: '610112',
    district_name: '未央区',
    industry_name: null,
    longitude: 108.9,
    latitude: 34.3,
    production_status: 'normal',
    facilities: {
      P1: { kind: 'production', state: 'running' },
      C1: { kind: 'control', state: 'running' },
    },
    alarms: [],
    ...overrides,
  }
}

describe('the state an enterprise is coloured by', () => {
  it('is violating while an alarm holds, whatever the facilities do', () => {
    const e = enterprise('1', { alarms: [{ id: 'a', rule_code: 'R1', level: 2, status: 'dispatched', active: true }] })
    expect(enterpriseState(e)).toBe('violating')
  })

  it('is not violating for an open alarm whose condition recovered', () => {
    const e = enterprise('1', { alarms: [{ id: 'a', rule_code: 'R1', level: 1, status: 'open', active: false }] })
    expect(enterpriseState(e)).toBe('running')
  })

  it('is running when a production facility runs or runs at low load', () => {
    expect(enterpriseState(enterprise('1'))).toBe('running')
    const low = enterprise('1', { facilities: { P1: { kind: 'production', state: 'low_load' }, C1: { kind: 'control', state: 'stopped' } } })
    expect(enterpriseState(low)).toBe('running')
  })

  it('is stopped when production stands still, offline when everything is offline', () => {
    const stopped = enterprise('1', { facilities: { P1: { kind: 'production', state: 'standby' }, C1: { kind: 'control', state: 'offline' } } })
    expect(enterpriseState(stopped)).toBe('stopped')
    const offline = enterprise('1', { facilities: { P1: { kind: 'production', state: 'offline' }, C1: { kind: 'control', state: 'offline' } } })
    expect(enterpriseState(offline)).toBe('offline')
  })

  it('is unknown without any state', () => {
    expect(enterpriseState(enterprise('1', { facilities: { P1: { kind: 'production', state: null } } }))).toBe('unknown')
    expect(enterpriseState(enterprise('1', { facilities: {} }))).toBe('unknown')
  })
})

describe('live items change the model', () => {
  it('updates a facility state and opens, changes and closes alarms', () => {
    const map = new Map([['E1', enterprise('E1')]])
    expect(applyItem(map, { type: 'facility', enterprise_id: 'E1', facility_id: 'P1', state: 'stopped' })).toBe(true)
    expect(enterpriseState(map.get('E1')!)).toBe('stopped')

    applyItem(map, { type: 'alarm', enterprise_id: 'E1', alarm_id: 'A1', rule_code: 'R1', status: 'open', level: 1, active: true })
    expect(map.get('E1')!.alarms).toHaveLength(1)
    applyItem(map, { type: 'alarm', enterprise_id: 'E1', alarm_id: 'A1', rule_code: 'R1', status: 'dispatched', level: 2, active: true })
    expect(map.get('E1')!.alarms).toEqual([{ id: 'A1', rule_code: 'R1', level: 2, status: 'dispatched', active: true }])
    applyItem(map, { type: 'alarm', enterprise_id: 'E1', alarm_id: 'A1', rule_code: 'R1', status: 'closed', level: 2, active: false })
    expect(map.get('E1')!.alarms).toHaveLength(0)
  })

  it('ignores enterprises outside the loaded scope', () => {
    const map = new Map([['E1', enterprise('E1')]])
    expect(applyItem(map, { type: 'facility', enterprise_id: 'E9', facility_id: 'P1', state: 'stopped' })).toBe(false)
    expect(map.size).toBe(1)
  })

  it('treats suppressed alarms as not open', () => {
    const map = new Map([['E1', enterprise('E1')]])
    applyItem(map, { type: 'alarm', enterprise_id: 'E1', alarm_id: 'A1', status: 'suppressed', level: 1 })
    expect(map.get('E1')!.alarms).toHaveLength(0)
  })
})

describe('counts', () => {
  it('counts enterprises by state and open alarms by level', () => {
    const counts = countsOf([
      enterprise('1'),
      enterprise('2', { alarms: [{ id: 'a', rule_code: 'R1', level: 3, status: 'open', active: true }, { id: 'b', rule_code: 'R2', level: 1, status: 'open', active: null }] }),
      enterprise('3', { facilities: { P1: { kind: 'production', state: 'offline' } } }),
    ])
    expect(counts.enterprises).toBe(3)
    expect(counts.byState).toEqual({ violating: 1, running: 1, stopped: 0, offline: 1, unknown: 0 })
    expect(counts.alarmsByLevel).toEqual({ 1: 1, 2: 0, 3: 1 })
    expect(counts.openAlarms).toBe(2)
  })
})

describe('the live store', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('loads every page of the overview in parallel and applies batches', async () => {
    const pages: Record<string, unknown> = {
      '1': { items: [enterprise('E1')], total: 3, page: 1, page_size: 1 },
      '2': { items: [enterprise('E2')], total: 3, page: 2, page_size: 1 },
      '3': { items: [enterprise('E3')], total: 3, page: 3, page_size: 1 },
    }
    const fetchMock = vi.fn(async (url: string) => {
      const page = new URL(url, 'http://x').searchParams.get('page') ?? '1'
      return new Response(JSON.stringify(pages[page]), { status: 200, headers: { 'content-type': 'application/json' } })
    })
    vi.stubGlobal('fetch', fetchMock)
    const live = useLive()
    await live.load()
    expect(live.counts.enterprises).toBe(3)
    expect(fetchMock).toHaveBeenCalledTimes(3)
    const before = live.version
    live.apply([{ type: 'alarm', enterprise_id: 'E2', alarm_id: 'A', rule_code: 'R1', status: 'open', level: 3, active: true }])
    expect(live.version).toBe(before + 1)
    expect(live.counts.byState.violating).toBe(1)
    expect(live.recent[0].alarm_id).toBe('A')
    vi.unstubAllGlobals()
  })

  it('reports a failed load instead of showing an empty city', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ status: 503, detail: 'starting' }), { status: 503 })))
    const live = useLive()
    await live.load()
    expect(live.error).toBe('starting')
    expect(live.loading).toBe(false)
    vi.unstubAllGlobals()
  })
})
