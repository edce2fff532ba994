// ECharts with only the parts the application draws (tree-shaken: a fraction of the full
// library), and the Xi'an district map loaded once from /geo (no online tiles).
import * as echarts from 'echarts/core'
import { BarChart, LineChart, MapChart, PieChart, ScatterChart } from 'echarts/charts'
import {
  DataZoomComponent,
  GeoComponent,
  GridComponent,
  LegendComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
} from 'echarts/components'
import { CanvasRenderer } from 'echarts/renderers'

echarts.use([
  BarChart,
  LineChart,
  MapChart,
  PieChart,
  ScatterChart,
  DataZoomComponent,
  GeoComponent,
  GridComponent,
  LegendComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TitleComponent,
  TooltipComponent,
  CanvasRenderer,
])

export { echarts }

export const CITY_MAP = 'xian'
let cityMap: Promise<void> | null = null

export function loadCityMap(): Promise<void> {
  if (!cityMap) {
    cityMap = fetch('/geo/xian-districts.json')
      .then((response) => {
        if (!response.ok) throw new Error(`map: HTTP ${response.status}`)
        return response.json()
      })
      .then((geo) => {
        echarts.registerMap(CITY_MAP, geo)
      })
      .catch((error) => {
        cityMap = null
        throw error
      })
  }
  return cityMap
}
