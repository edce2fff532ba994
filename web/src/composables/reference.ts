// Reference lists loaded once per page view (districts of the city, for filters).
import { ref } from 'vue'
import { get } from '../api/http'

export interface District {
  code: string
  name: string
  level: string
  parent: string | null
}

const CITY = '610100' // 西安市: the synthetic city and the map (docs/ui.md says how to change it)
const districts = ref<District[]>([])
let loading: Promise<void> | null = null

export function useDistricts() {
  if (!loading) {
    loading = get<District[]>('/api/registry/reference/districts')
      .then((all) => {
        districts.value = all.filter((d) => d.parent === CITY)
      })
      .catch(() => {
        loading = null
      })
  }
  return districts
}

export function districtName(code: string | null | undefined): string {
  if (!code) return '—'
  return districts.value.find((d) => d.code === code)?.name ?? code
}
