// The O&M desk's shared state: the service levels (`/api/ops/sla`, loaded once), the
// knowledge-base categories, the counts the list pages show above their tables, and one
// clock tick for every SLA countdown on the page.
import { defineStore } from 'pinia'
import { get, type Page } from '../api/http'

export const INCIDENT_LEVELS = ['critical', 'major', 'moderate', 'minor'] as const
export const INCIDENT_STATUSES = ['open', 'responded', 'mitigated', 'resolved', 'verified', 'cancelled'] as const
export const INCIDENT_SOURCES = ['manual', 'alertmanager', 'platform'] as const
export const REQUEST_KINDS = ['question', 'data_correction', 'account', 'other'] as const
export const REQUEST_STATUSES = ['submitted', 'accepted', 'answered', 'resolved', 'closed', 'rejected', 'withdrawn'] as const

export interface LevelSla {
  level: string
  level_name: string
  response_min: number
  resolution_min: number
  hardware_resolution_min: number
}

export interface KindSla {
  kind: string
  kind_name: string
  sla: string
  working_minutes: number
  stops_on: string
}

export interface ServiceLevels {
  incident_levels: LevelSla[]
  request_kinds: KindSla[]
  workday_start: string
  workday_end: string
  warning_share: number
}

export interface CategoryCount {
  category: string
  articles: number
}

type Query = Record<string, string | number | boolean | null | undefined>

/**
 * How many cases each value of `key` has under the other filters, plus those overdue: one
 * `page_size=1` request per value, in parallel (the list's `total` is the count), so the
 * figures are the server's, scoped exactly as the list.
 */
export async function countBy(
  url: string,
  query: Query,
  key: string,
  values: readonly string[],
): Promise<Record<string, number>> {
  const base = { ...query, [key]: undefined, page: 1, page_size: 1 }
  const [overdue, ...totals] = await Promise.all([
    get<Page<unknown>>(url, { ...query, overdue: true, page: 1, page_size: 1 }, { background: true }),
    ...values.map((value) => get<Page<unknown>>(url, { ...base, [key]: value }, { background: true })),
  ])
  const counts: Record<string, number> = Object.fromEntries(values.map((value, i) => [value, totals[i].total]))
  counts.overdue = overdue.total
  return counts
}

export const useDesk = defineStore('desk', {
  state: () => ({
    sla: null as ServiceLevels | null,
    categories: [] as CategoryCount[],
    incidentCounts: {} as Record<string, number>,
    requestCounts: {} as Record<string, number>,
    /** The instant every SLA countdown is drawn at; `follow()` moves it. */
    now: new Date(),
  }),
  getters: {
    levelSla: (state) => (level: string) => state.sla?.incident_levels.find((l) => l.level === level) ?? null,
    kindSla: (state) => (kind: string) => state.sla?.request_kinds.find((k) => k.kind === kind) ?? null,
  },
  actions: {
    async loadSla(): Promise<ServiceLevels | null> {
      if (!this.sla) {
        try {
          this.sla = await get<ServiceLevels>('/api/ops/sla')
        } catch {
          this.sla = null // the pages still work without the table of service levels
        }
      }
      return this.sla
    },
    async loadCategories(): Promise<CategoryCount[]> {
      try {
        this.categories = await get<CategoryCount[]>('/api/ops/kb/categories')
      } catch {
        this.categories = []
      }
      return this.categories
    },
    async countIncidents(query: Query = {}) {
      try {
        this.incidentCounts = await countBy('/api/ops/incidents', query, 'status', INCIDENT_STATUSES)
      } catch {
        this.incidentCounts = {}
      }
    },
    async countRequests(query: Query = {}) {
      try {
        this.requestCounts = await countBy('/api/ops/requests', query, 'status', REQUEST_STATUSES)
      } catch {
        this.requestCounts = {}
      }
    },
    /** Redraw the countdowns every `everyMs` (one timer for the page); returns the stop. */
    follow(everyMs = 15_000): () => void {
      this.now = new Date()
      const timer = setInterval(() => {
        this.now = new Date()
      }, everyMs)
      return () => clearInterval(timer)
    },
  },
})
