// SLA countdowns on a page: the desk store's clock moves while the page is open (one timer
// for every clock on it) and stops when the page goes.
import { onBeforeUnmount, onMounted } from 'vue'
import { useDesk } from '../stores/desk'

export function useCountdown(everyMs?: number): void {
  const desk = useDesk()
  let stop: (() => void) | null = null
  onMounted(() => {
    stop = desk.follow(everyMs)
  })
  onBeforeUnmount(() => stop?.())
}
