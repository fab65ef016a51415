export { ROOT } from "../../tools/paths";
