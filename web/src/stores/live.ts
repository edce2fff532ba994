// The city overview's model: every enterprise in scope with its facility states and open
// alarms, loaded from `/api/alarm/overview` and kept current by the gateway's live stream.
import { defineStore } from 'pinia'
import { markRaw } from 'vue'
import { get, type Page } from '../api/http'
import { connectLive, type LiveConnection } from '../api/sse'

export type FacilityState = 'offline' | 'power_loss' | 'stopped' | 'standby' | 'running' | 'low_load' | null
export type EnterpriseState = 'violating' | 'running' | 'stopped' | 'offline' | 'unknown'
export const ENTERPRISE_STATES: EnterpriseState[] = ['violating', 'running', 'stopped', 'offline', 'unknown']
export const STATE_COLOURS: Record<EnterpriseState, string> = {
  violating: '#d03050',
  running: '#18a058',
  stopped: '#2080f0',
  offline: '#606266',
  unknown: '#c0c4cc',
}

export interface OpenAlarm {
  id: string
  rule_code: string
  level: number
  status: string
  active: boolean | null
}

export interface OverviewEnterprise {
  id: string
  name: string
  district_code: string
  district_name: string | null
  industry_name: string | null
  longitude: number | null
  latitude: number | null
  production_status: string
  facilities: Record<string, { kind: 'production' | 'control'; state: FacilityState }>
  alarms: OpenAlarm[]
}

export interface LiveItem {
  type: 'facility' | 'alarm'
  enterprise_id: string
  facility_id?: string
  state?: FacilityState
  alarm_id?: string
  rule_code?: string
  status?: string
  level?: number
  active?: boolean | null
}

const CLOSED = new Set(['closed', 'suppressed'])

/**
 * How the map colours an enterprise: violating while an alarm's condition holds (or an alarm
 * is open and not yet known to have recovered); else running when a production facility
 * runs; offline when every known facility is offline; stopped when production is stopped,
 * on stand-by or without power; unknown without data.
 */
export function enterpriseState(enterprise: Pick<OverviewEnterprise, 'facilities' | 'alarms'>): EnterpriseState {
  if (enterprise.alarms.some((alarm) => alarm.active !== false)) return 'violating'
  const facilities = Object.values(enterprise.facilities)
  const known = facilities.filter((f) => f.state)
  if (known.length === 0) return 'unknown'
  const production = known.filter((f) => f.kind === 'production')
  if (production.some((f) => f.state === 'running' || f.state === 'low_load')) return 'running'
  if (known.every((f) => f.state === 'offline')) return 'offline'
  return 'stopped'
}

/** Apply one live item to the model; returns true when the enterprise was in it. */
export function applyItem(enterprises: Map<string, OverviewEnterprise>, item: LiveItem): boolean {
  const enterprise = enterprises.get(item.enterprise_id)
  if (!enterprise) return false
  if (item.type === 'facility' && item.facility_id) {
    const facility = enterprise.facilities[item.facility_id]
    if (facility) facility.state = item.state ?? null
    else enterprise.facilities[item.facility_id] = { kind: 'control', state: item.state ?? null }
  } else if (item.type === 'alarm' && item.alarm_id) {
    const others = enterprise.alarms.filter((alarm) => alarm.id !== item.alarm_id)
    if (!CLOSED.has(item.status ?? '')) {
      others.push({
        id: item.alarm_id,
        rule_code: item.rule_code ?? '',
        level: item.level ?? 1,
        status: item.status ?? 'open',
        active: item.active ?? null,
      })
    }
    enterprise.alarms = others
  }
  return true
}

export interface Counts {
  enterprises: number
  byState: Record<EnterpriseState, number>
  alarmsByLevel: Record<number, number>
  openAlarms: number
}

export function countsOf(enterprises: Iterable<OverviewEnterprise>): Counts {
  const byState = Object.fromEntries(ENTERPRISE_STATES.map((s) => [s, 0])) as Record<EnterpriseState, number>
  const alarmsByLevel: Record<number, number> = { 1: 0, 2: 0, 3: 0 }
  let total = 0
  let open = 0
  for (const enterprise of enterprises) {
    total += 1
    byState[enterpriseState(enterprise)] += 1
    for (const alarm of enterprise.alarms) {
      alarmsByLevel[alarm.level] = (alarmsByLevel[alarm.level] ?? 0) + 1
      open += 1
    }
  }
  return { enterprises: total, byState, alarmsByLevel, openAlarms: open }
}

export const useLive = defineStore('live', {
  state: () => ({
    // A Map in a plain field: the map re-renders from `version`, not from deep reactivity
    // over thousands of objects (which would cost a frame per update).
    enterprises: markRaw(new Map<string, OverviewEnterprise>()) as Map<string, OverviewEnterprise>,
    version: 0,
    loading: false,
    error: null as string | null,
    connection: 'closed' as 'connecting' | 'open' | 'closed',
    lastUpdate: null as string | null,
    recent: [] as LiveItem[],
  }),
  getters: {
    counts: (state) => {
      void state.version
      return countsOf(state.enterprises.values())
    },
    list: (state) => {
      void state.version
      return [...state.enterprises.values()]
    },
  },
  actions: {
    async load() {
      this.loading = true
      this.error = null
      try {
        const first = await get<Page<OverviewEnterprise>>('/api/alarm/overview', { page: 1, page_size: 500 })
        const pages = Math.ceil(first.total / first.page_size)
        const rest = await Promise.all(
          Array.from({ length: Math.max(0, pages - 1) }, (_, i) =>
            get<Page<OverviewEnterprise>>('/api/alarm/overview', { page: i + 2, page_size: 500 }),
          ),
        )
        const map = new Map<string, OverviewEnterprise>()
        for (const page of [first, ...rest]) for (const e of page.items) map.set(e.id, e)
        this.enterprises = markRaw(map)
        this.version += 1
      } catch (error) {
        this.error = (error as Error).message
      } finally {
        this.loading = false
      }
    },
    apply(items: LiveItem[]) {
      let changed = false
      for (const item of items) changed = applyItem(this.enterprises, item) || changed
      this.recent = [...items.filter((i) => i.type === 'alarm'), ...this.recent].slice(0, 20)
      if (changed) {
        this.version += 1
        this.lastUpdate = new Date().toISOString()
      }
    },
    follow(): LiveConnection {
      return connectLive('/api/live/stream', {
        onState: (state) => {
          this.connection = state
        },
        onMessage: (message) => {
          if (message.event === 'batch') this.apply(JSON.parse(message.data) as LiveItem[])
          else if (message.event === 'resync') void this.load()
        },
      })
    },
  },
})
